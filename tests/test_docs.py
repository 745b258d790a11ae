"""The docs are for users: what they show can be copied and works, and nothing in the
repository reads like a work diary.

- No tracked text file names an issue number, a work session, or the machines the tests
  ran on.
- Every fenced ```json block in README.md, docs/*.md, infra/README.md and bench/README.md
  is valid JSON. A block that is deliberately partial (members of a larger object, such as
  `"auth": {...}`) follows a `<!-- fragment -->` line and must parse once wrapped in `{}`.
- Every gateway config in them passes `shared.config.parse_config`: complete documents as
  they are, fragments placed where they belong (a server's fields in a server, `entra` in a
  server's `auth`, ...). `<placeholders>` in strings stand for the reader's values and are
  replaced by a GUID first.
- Client configs never hold a key: a VS Code `mcp.json` takes every credential header from
  an `inputs` promptString with `password: true`; Claude Code and Cursor files from an
  environment variable; shell commands from a variable. No block holds anything that looks
  like a real key or token.
- Every ```sh / ```bash block passes `bash -n`, every ```python block compiles, and every
  relative link (and its #anchor) resolves.
- docs/clients.md shows the set-ups the demo prints (whose tests drive the real clients),
  and its Python example and `claude mcp add` command work against the demo as written.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

import npm_tools
from shared.config import parse_config
from shared.errors import ConfigError
from shared.snippets import ClientSetup

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", ROOT / "infra" / "README.md", ROOT / "bench" / "README.md", *(ROOT / "docs").glob("*.md")])
FRAGMENT_MARKER = "<!-- fragment -->"
PLACEHOLDER = re.compile(r"<[^<>\"]+>")
PLACEHOLDER_VALUE = "00000000-0000-0000-0000-000000000000"


# -- internal text ----------------------------------------------------------------------

INTERNAL = [
    (re.compile(r"\bissues?\s*[-#]?\s*\d+", re.I), "an issue number"),
    (re.compile(r"\b(later|future|next|previous|earlier|separate) issues?\b|\bissue of its own\b", re.I), "the issue tracker"),
    (re.compile(r"\bsession\s*#?\d+\b|\b(in|during|from) (this|a previous|the previous|an earlier|the next|a later) session\b", re.I), "a work session"),
    (re.compile(r"\bthis VM\b|\btest machines?\b|\bmachines? (that|which) (run|ran) the tests\b", re.I), "the machines the tests ran on"),
    (re.compile(r"\b(cannot|can ?not|can't|could not|couldn't) be installed here\b|\bnot installable here\b", re.I), "the machines the tests ran on"),
]
# Lines that name the phrases in order to forbid them.
ALLOWED = {
    ("tests/test_infra.py", 're.search(r"test machines?|machines that run the tests'),
}


def tracked_text_files() -> Iterator[tuple[str, str]]:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        path = ROOT / name
        if name == "tests/test_docs.py" or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            yield name, data.decode("utf-8")
        except UnicodeDecodeError:
            continue


def test_no_tracked_file_mentions_issue_numbers_sessions_or_test_machines() -> None:
    found = []
    for name, text in tracked_text_files():
        for number, line in enumerate(text.splitlines(), 1):
            if any(name == path and part in line for path, part in ALLOWED):
                continue
            for pattern, what in INTERNAL:
                match = pattern.search(line)
                if match:
                    found.append(f"{name}:{number}: {what} ({match.group(0)!r}): {line.strip()[:160]}")
    assert not found, "text for the team, not for users:\n" + "\n".join(found)


# -- fenced blocks ----------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence
    lang: str
    text: str
    fragment: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    blocks, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^(\s*)(`{3,})\s*([\w+-]*)", lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, lang = opening.groups()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), None)
        assert end is not None, f"{path.relative_to(ROOT)}:{i + 1}: unclosed code fence"
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1 : end])
        blocks.append(Block(path, i + 1, lang.lower(), body, before == FRAGMENT_MARKER))
        i = end + 1
    return blocks


ALL_BLOCKS = [block for doc in DOCS for block in fenced_blocks(doc)]
JSON_BLOCKS = [b for b in ALL_BLOCKS if b.lang in ("json", "jsonc")]
SHELL_BLOCKS = [b for b in ALL_BLOCKS if b.lang in ("sh", "bash", "shell")]
PYTHON_BLOCKS = [b for b in ALL_BLOCKS if b.lang in ("python", "py")]


def ids(blocks: list[Block]) -> list[str]:
    return [b.where for b in blocks]


def load_json(block: Block) -> Any:
    text = "{" + block.text + "}" if block.fragment else block.text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        hint = f" (a partial block needs a '{FRAGMENT_MARKER}' line before it)" if not block.fragment else " (wrapped in {})"
        pytest.fail(f"{block.where}: not valid JSON{hint}: {exc}")


@pytest.mark.parametrize("block", JSON_BLOCKS, ids=ids(JSON_BLOCKS))
def test_json_block_is_valid_json(block: Block) -> None:
    load_json(block)


# -- gateway configs --------------------------------------------------------------------

DOCUMENT_KEYS = {"$schema", "gateway", "servers", "subscriptions"}
SERVER_KEYS = {"url", "transport", "messageUrl", "description", "anonymous", "timeouts", "headers", "auth", "outbound"}
AUTH_KEYS = {"mode", "subscriptionKey", "entra", "jwt"}
SAMPLE_BACKEND = "https://backend.example.com/mcp"


def is_vscode(document: Any) -> bool:
    servers = document.get("servers") if isinstance(document, dict) else None
    return isinstance(document, dict) and (
        "inputs" in document or (isinstance(servers, dict) and any(isinstance(s, dict) and "type" in s for s in servers.values()))
    )


def with_placeholders_filled(value: Any) -> Any:
    if isinstance(value, str):
        return PLACEHOLDER.sub(PLACEHOLDER_VALUE, value)
    if isinstance(value, dict):
        return {k: with_placeholders_filled(v) for k, v in value.items()}
    if isinstance(value, list):
        return [with_placeholders_filled(v) for v in value]
    return value


def sample_server(fields: dict[str, Any]) -> dict[str, Any]:
    server = {"url": SAMPLE_BACKEND, **fields}
    if "auth" not in server and "anonymous" not in server:
        server["anonymous"] = True
    return server


def as_gateway_config(block: Block, document: Any) -> dict[str, Any] | None:
    """The gateway config a block is, or a fragment of (placed where it belongs); None if neither."""
    if not isinstance(document, dict) or not document or is_vscode(document) or "mcpServers" in document:
        return None
    keys = set(document)  # by intersection, so that a misspelt field reaches the loader
    if not block.fragment:
        return document if "servers" in document else None
    if keys & DOCUMENT_KEYS:
        servers = dict(document.get("servers", {}))
        for subscription in document.get("subscriptions", {}).values():
            for name in subscription.get("servers", ()):
                if name != "*" and name not in servers:
                    servers[name] = sample_server({})  # the rest of the config
        return {**document, "servers": servers or {"example": sample_server({})}}
    if keys & SERVER_KEYS:
        return {"servers": {"example": sample_server(document)}}
    if keys & AUTH_KEYS:
        return {"servers": {"example": sample_server({"auth": document})}}
    return None


def _parses(block: Block) -> Any:
    try:
        return json.loads("{" + block.text + "}" if block.fragment else block.text)
    except json.JSONDecodeError:
        return None


GATEWAY_BLOCKS = [b for b in JSON_BLOCKS if as_gateway_config(b, _parses(b)) is not None]


def test_the_docs_show_gateway_configs() -> None:
    """The placement rules above recognise the configs the docs show (a guard against a rule gone blind)."""
    files = {b.path.relative_to(ROOT).as_posix() for b in GATEWAY_BLOCKS}
    assert {"README.md", "infra/README.md", "docs/inbound.md", "docs/outbound.md"} <= files, files


@pytest.mark.parametrize("block", GATEWAY_BLOCKS, ids=ids(GATEWAY_BLOCKS))
def test_gateway_config_block_passes_the_loader(block: Block) -> None:
    config = with_placeholders_filled(as_gateway_config(block, load_json(block)))
    try:
        parse_config(config)
    except ConfigError as error:
        pytest.fail(f"{block.where}: the gateway would refuse this config: {error}")


# -- client configs and keys ------------------------------------------------------------

CREDENTIAL_HEADER = re.compile(r"key|token|auth|secret|password|api", re.I)
VARIABLE = re.compile(r"^(Bearer )?(\$\{(input:|env:)?[\w.-]+\}|\$\w+|<[^<>]+>)$")
SECRET_LOOKING = [
    re.compile(r"\beyJ[\w-]{8,}\.[\w-]{8,}"),  # a JWT
    re.compile(r"(?<![\w-])(?=[\w-]*[A-Z])(?=[\w-]*[a-z])(?=[\w-]*\d)[\w-]{32,}(?![\w-])"),  # a generated key
]
SHELL_HEADER = re.compile(r"""(?:-H|--header)\s+(["'])([^"':]+):\s*(.*?)\1""")


def client_blocks(kind: str) -> list[Block]:
    found = []
    for block in JSON_BLOCKS:
        document = _parses(block)
        if kind == "vscode" and not block.fragment and is_vscode(document):
            found.append(block)
        if kind == "mcpServers" and isinstance(document, dict) and "mcpServers" in document:
            found.append(block)
    return found


VSCODE_BLOCKS = client_blocks("vscode")
OTHER_CLIENT_BLOCKS = client_blocks("mcpServers")


@pytest.mark.parametrize("block", VSCODE_BLOCKS, ids=ids(VSCODE_BLOCKS))
def test_vscode_mcp_json_takes_keys_from_a_password_input(block: Block) -> None:
    document = load_json(block)
    secret_inputs = {i["id"] for i in document.get("inputs", []) if i.get("type") == "promptString" and i.get("password") is True}
    for name, server in document["servers"].items():
        for header, value in server.get("headers", {}).items():
            if not CREDENTIAL_HEADER.search(header):
                continue
            used = re.fullmatch(r"(?:Bearer )?\$\{input:([\w.-]+)\}", value)
            assert used and used.group(1) in secret_inputs, (
                f"{block.where}: servers.{name}.headers.{header} must be ${{input:ID}} with an inputs entry "
                f'{{"type": "promptString", "id": ID, "password": true}}, not {value!r}'
            )


@pytest.mark.parametrize("block", OTHER_CLIENT_BLOCKS, ids=ids(OTHER_CLIENT_BLOCKS))
def test_claude_code_and_cursor_files_take_keys_from_the_environment(block: Block) -> None:
    for name, server in load_json(block)["mcpServers"].items():
        for header, value in server.get("headers", {}).items():
            if CREDENTIAL_HEADER.search(header):
                assert re.fullmatch(r"(?:Bearer )?\$\{(env:)?\w+\}", value), (
                    f"{block.where}: mcpServers.{name}.headers.{header} must come from an environment variable, not {value!r}"
                )


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=ids(ALL_BLOCKS))
def test_no_block_holds_a_key(block: Block) -> None:
    for pattern in SECRET_LOOKING:
        match = pattern.search(block.text)
        assert not match, f"{block.where}: looks like a real key or token: {match.group(0)[:12]}..."
    for _, header, value in SHELL_HEADER.findall(block.text):
        if CREDENTIAL_HEADER.search(header):
            assert VARIABLE.match(value.strip()), f"{block.where}: header {header} given literally; use a variable: {value!r}"


# -- shell, python, links ---------------------------------------------------------------


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=ids(SHELL_BLOCKS))
def test_shell_block_parses(block: Block) -> None:
    done = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{block.where}: bash -n: {done.stderr}"


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=ids(PYTHON_BLOCKS))
def test_python_block_compiles(block: Block) -> None:
    try:
        compile(block.text, block.where, "exec")
    except SyntaxError as error:
        pytest.fail(f"{block.where}: {error}")


def github_anchor(heading: str) -> str:
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """GitHub's heading ids: a repeated heading gets -1, -2, ..."""
    text = re.sub(r"^\s*```.*?^\s*```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    seen: dict[str, int] = {}
    for match in re.finditer(r"^#+\s+(.*)$", text, re.M):
        slug = github_anchor(match.group(1))
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def relative_links(path: Path) -> Iterator[tuple[int, str]]:
    in_fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        if in_fence:
            continue
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):
                yield number, target


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for number, target in relative_links(doc):
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        if not path.exists():
            broken.append(f"{doc.relative_to(ROOT)}:{number}: {target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{doc.relative_to(ROOT)}:{number}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


# -- docs/clients.md against the demo ---------------------------------------------------

CLIENTS = ROOT / "docs" / "clients.md"
EXAMPLE_URL = "https://mcp.contoso.com/mcp/docs"
DEMO_URL_IN_DOCS = "http://127.0.0.1:8000/mcp/demo"


def clients_lines() -> list[str]:
    return [line for b in SHELL_BLOCKS if b.path == CLIENTS for line in b.text.splitlines()]


def test_client_docs_show_the_snippets_the_demo_prints() -> None:
    setup = ClientSetup("docs", EXAMPLE_URL)
    documents = [load_json(b) for b in JSON_BLOCKS if b.path == CLIENTS and not b.fragment]
    for name, snippet in (("VS Code", setup.vscode()), ("Claude Code", setup.claude_code()), ("Cursor", setup.cursor())):
        assert json.loads(snippet) in documents, f"docs/clients.md: the {name} set-up differs from the demo's:\n{snippet}"
    assert setup.inspector_command() in clients_lines(), setup.inspector_command()


@dataclass
class RunningDemo:
    url: str
    key: str


@pytest.fixture(scope="module")
def demo() -> Iterator[RunningDemo]:
    proc, log_path, tmpdir = npm_tools._spawn(
        [sys.executable, "-m", "shared", "demo", "--port", "0"],
        {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
    )
    handle = npm_tools.ServerHandle(proc, 0, "", log_path, tmpdir)
    try:
        url = npm_tools._wait_log_line(proc, log_path, "MCP endpoint: ", 30)
        npm_tools._wait_log_line(proc, log_path, "Ctrl+C stops both.", 30)
        key = re.search(r"Subscription key \(header Ocp-Apim-Subscription-Key\): (\S+)", handle.log()).group(1)
        yield RunningDemo(url, key)
    finally:
        handle.stop()


def test_the_python_example_runs_as_written(demo: RunningDemo) -> None:
    (block,) = [b for b in PYTHON_BLOCKS if b.path == CLIENTS and "streamable_http_client" in b.text]
    assert DEMO_URL_IN_DOCS in block.text
    script = block.text.replace(DEMO_URL_IN_DOCS, demo.url)
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "MCP_GATEWAY_KEY": demo.key},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # what docs/clients.md says it prints
    assert done.stdout.splitlines() == ["['add', 'echo', 'countdown']", "{'result': 3.0}"]


def test_claude_code_add_command_connects_and_keeps_the_key_out_of_its_files(demo: RunningDemo, tmp_path: Path) -> None:
    (line,) = [line for line in clients_lines() if line.startswith("claude mcp add")]
    home, project = tmp_path / "home", tmp_path / "project"
    (home / ".claude").mkdir(parents=True)
    project.mkdir()
    env = {**{k: v for k, v in os.environ.items() if k != "MCP_GATEWAY_KEY"}, "HOME": str(home), "NO_COLOR": "1",
           "PATH": f"{Path(npm_tools.claude_cli()[0]).parent}{os.pathsep}{os.environ['PATH']}"}
    added = subprocess.run(["bash", "-c", line.replace(EXAMPLE_URL, demo.url)], env=env, cwd=project,
                           capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stdout + added.stderr
    listed = subprocess.run(["claude", "mcp", "list"], env={**env, "MCP_GATEWAY_KEY": demo.key}, cwd=project,
                            capture_output=True, text=True, timeout=120)
    assert re.search(r"docs: .* - ✔ Connected", listed.stdout), listed.stdout + listed.stderr
    stored = "".join(p.read_text(errors="replace") for p in home.rglob("*") if p.is_file() and p.suffix == ".json")
    assert "${MCP_GATEWAY_KEY}" in stored and demo.key not in stored


# -- the performance chart and the README's table --------------------------------------

sys.path.insert(0, str(ROOT / "bench"))
import chart  # noqa: E402  (bench/chart.py)
import run as bench_run  # noqa: E402  (bench/run.py)
from harness import LoadResult  # noqa: E402

CHART = ROOT / "bench" / "throughput.svg"


def charted_summary(path: Path = CHART) -> dict[str, Any]:
    from xml.etree import ElementTree

    metadata = ElementTree.parse(path).getroot().find("{http://www.w3.org/2000/svg}metadata")
    assert metadata is not None and metadata.text, f"{path}: no <metadata> with the charted numbers"
    return json.loads(metadata.text)


def test_the_committed_chart_is_what_chart_py_draws() -> None:
    assert CHART.read_text() == chart.svg(charted_summary()), "bench/throughput.svg was not drawn by bench/chart.py as it is"


def test_the_readme_quotes_the_charted_run() -> None:
    table = chart.markdown(charted_summary())
    assert table in (ROOT / "README.md").read_text(), (
        f"README.md's performance table is not the run bench/throughput.svg shows "
        f"({charted_summary()['source']}): paste what bench/chart.py prints:\n{table}"
    )


def load_result(backend: str, target: str, connections: int, rep: int, rps: float, p50: float, cpu: float | None) -> LoadResult:
    return LoadResult(backend, target, connections, rep, int(rps * 5), 5.0, rps, p50, p50, p50 * 2, p50 * 3, cpu, 100.0)


def test_chart_py_draws_a_run_of_the_benchmark(tmp_path: Path) -> None:
    results = []
    for rep, speed in enumerate((1.0, 1.3, 0.7)):  # the machine drifts between reps; ratios are paired per rep
        for target, share, added, cpu in (("direct", 1.0, 0.0, None), ("nginx", 0.9, 0.1, 80.0), ("gateway:anonymous", 0.7, 0.3, 170.0)):
            results.append(load_result("sdk-json", target, 64, rep, 2000 * speed * share, 1.0, cpu))
            results.append(load_result("sdk-json", target, 1, rep, 900 * speed * share, 0.5 + added, cpu))
    document = {"load_summary": bench_run.summarize_load(results)}
    source = tmp_path / "20260102-030405.json"
    source.write_text(json.dumps(document))
    out = tmp_path / "chart.svg"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "chart.py"), str(source), "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    summary = charted_summary(out)
    assert summary["source"] == source.name and summary["direct_rps_c64"] == {"sdk-json": 2000}
    assert {r["target"]: r["rps_ratio_c64"] for r in summary["rows"]} == {"nginx": 0.9, "gateway:anonymous": 0.7}
    assert "| req/s at 64 connections, share of direct: MCP SDK server, JSON answers | 0.90 | 0.70 |" in done.stdout
    assert "| added median latency, 1 connection: MCP SDK server, JSON answers | +0.10 ms | +0.30 ms |" in done.stdout


def test_chart_py_refuses_a_run_without_64_connections(tmp_path: Path) -> None:
    quick = [load_result("raw", t, 16, 0, 1000.0, 0.2, None if t == "direct" else 90.0) for t in ("direct", "gateway:anonymous")]
    source = tmp_path / "quick.json"
    source.write_text(json.dumps({"load_summary": bench_run.summarize_load(quick)}))
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "chart.py"), str(source), "--out", str(tmp_path / "x.svg")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "no run at 64 connections" in done.stderr
    assert not (tmp_path / "x.svg").exists()


def test_chart_py_takes_the_newest_full_run_by_default(tmp_path: Path) -> None:
    for name in ("20260101-000000.json", "20260103-000000-quick.json", "20260102-000000.json"):
        (tmp_path / name).write_text("{}")
    assert chart.newest_full_run(tmp_path).name == "20260102-000000.json"
