"""`python -m shared demo`, used the way the README and the demo's own output say:
every snippet it prints is parsed and used by the real client it is for (the MCP
Python SDK, the MCP Inspector CLI, Claude Code), with the right key, a missing key
and a wrong one."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

import npm_tools
from gateway_process import ROOT
from npm_tools import ServerHandle, _spawn, _wait_log_line

MISSING = "missing subscription key: send it in the Ocp-Apim-Subscription-Key header"
WRONG = "invalid subscription key"


class Demo:
    def __init__(self, handle: ServerHandle) -> None:
        self.handle = handle
        self.output = handle.log()
        self.url = handle.url
        self.key = re.search(r"Subscription key \(header Ocp-Apim-Subscription-Key\): (\S+)", self.output).group(1)

    def json_block(self, title: str) -> dict:
        """The JSON document printed after `title`."""
        start = self.output.index(title) + len(title)
        block = re.match(r"\s*(\{.*?\n\})", self.output[start:], re.S)
        assert block, f"no JSON after {title!r}"
        return json.loads(block.group(1))

    def command(self, title: str) -> list[str]:
        """The command line printed after `title`, split as a POSIX shell would (variables kept)."""
        line = self.output[self.output.index(title) + len(title):].strip().splitlines()[0]
        return shlex.split(line.removeprefix("or:").strip())


def start_demo(*extra: str) -> ServerHandle:
    cmd = [sys.executable, "-m", "shared", "demo", "--port", "0", *extra]
    proc, log_path, tmpdir = _spawn(cmd, {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)})
    handle = ServerHandle(proc, 0, "", log_path, tmpdir)
    try:
        handle.url = _wait_log_line(proc, log_path, "MCP endpoint: ", 30)
        _wait_log_line(proc, log_path, "Ctrl+C stops both.", 30)
        return handle
    except Exception:
        handle.stop()
        raise


@pytest.fixture(scope="module")
def demo():
    handle = start_demo()
    try:
        yield Demo(handle)
    finally:
        handle.proc.terminate()
        code = handle.proc.wait(15)
        log = handle.log()
        handle.stop()
        # uvicorn shuts down gracefully, then re-raises SIGTERM: a clean stop ends by that signal.
        assert code in (0, -15), log
        assert "Traceback" not in log


def test_every_snippet_parses_and_none_writes_the_key_into_a_file(demo):
    vscode = demo.json_block("VS Code (.vscode/mcp.json):")
    (prompt,) = vscode["inputs"]
    assert prompt["type"] == "promptString" and prompt["password"] is True
    server = vscode["servers"]["gateway-demo"]
    assert server == {"type": "http", "url": demo.url, "headers": {"Ocp-Apim-Subscription-Key": f"${{input:{prompt['id']}}}"}}
    claude = demo.json_block("Claude Code (.mcp.json):")["mcpServers"]["gateway-demo"]
    assert claude["url"] == demo.url and claude["headers"] == {"Ocp-Apim-Subscription-Key": "${MCP_GATEWAY_KEY}"}
    cursor = demo.json_block("Cursor (.cursor/mcp.json):")["mcpServers"]["gateway-demo"]
    assert cursor["url"] == demo.url and cursor["headers"] == {"Ocp-Apim-Subscription-Key": "${env:MCP_GATEWAY_KEY}"}
    for document in (vscode, claude, cursor):
        assert demo.key not in json.dumps(document)
    assert demo.command("  or:") == [
        "claude", "mcp", "add", "--transport", "http", "gateway-demo", demo.url,
        "--header", "Ocp-Apim-Subscription-Key: $MCP_GATEWAY_KEY"]
    assert f"export MCP_GATEWAY_KEY={demo.key}" in demo.output


async def sdk_call(url: str, headers: dict[str, str], mode: str = "auto") -> set[str]:
    http = httpx2.AsyncClient(headers=headers, timeout=30)
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        progress: list[float] = []

        async def on_progress(value, total, message):
            progress.append(value)

        result = await client.call_tool("countdown", {"steps": 3, "interval_seconds": 0.05}, progress_callback=on_progress)
        assert result.structured_content == {"result": "counted down 3 steps"} and progress == [1, 2, 3]
        about = await client.read_resource("demo://gateway/about")
        assert "through the gateway" in about.contents[0].text
        return tools


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_sdk_client_works_with_the_vscode_snippets_header(demo, mode):
    server = demo.json_block("VS Code (.vscode/mcp.json):")["servers"]["gateway-demo"]
    headers = {name: demo.key for name in server["headers"]}  # what VS Code sends once the user typed the key
    assert {"add", "echo", "countdown"} <= await sdk_call(server["url"], headers, mode)


@pytest.mark.parametrize(("key", "message"), [(None, MISSING), ("wrong-key-0123456789", WRONG)])
async def test_the_sdk_client_shows_the_gateways_message(demo, key, message):
    async with httpx.AsyncClient(timeout=10) as plain:
        refused = await plain.post(demo.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                   headers={"Ocp-Apim-Subscription-Key": key} if key else {})
    assert refused.status_code == 403 and "www-authenticate" not in refused.headers
    with pytest.raises(BaseException) as raised:
        await sdk_call(demo.url, {"Ocp-Apim-Subscription-Key": key} if key else {})
    error = raised.value
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert message in str(error)


def run_client(command: list[str], key: str | None, home: Path, cwd: Path | None = None) -> str:
    """A client command as the user runs it: $MCP_GATEWAY_KEY expanded by the shell, HOME of its own."""
    env = {k: v for k, v in os.environ.items() if k != "MCP_GATEWAY_KEY"}
    env.update(HOME=str(home), NO_COLOR="1", **({"MCP_GATEWAY_KEY": key} if key is not None else {}))
    line = " ".join(part if part.startswith("$") else shlex.quote(part) for part in command)
    line = line.replace("'Ocp-Apim-Subscription-Key: $MCP_GATEWAY_KEY'", '"Ocp-Apim-Subscription-Key: $MCP_GATEWAY_KEY"')
    done = subprocess.run(["bash", "-c", line], env=env, cwd=cwd or home, capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


def inspector_command(demo: Demo) -> list[str]:
    command = demo.command("MCP Inspector:")
    assert command[:2] == ["npx", "@modelcontextprotocol/inspector@2.12.0"]
    return npm_tools.inspector_cli() + command[2:]


def test_the_inspector_cli_lists_tools_with_the_key_and_shows_the_message_without(demo, tmp_path):
    listed = run_client(inspector_command(demo), demo.key, tmp_path)
    assert {"add", "echo", "countdown"} <= {tool["name"] for tool in json.loads(listed)["tools"]}, listed
    without_header = inspector_command(demo)[:-2]
    assert inspector_command(demo)[-2] == "--header"
    for command, key, message in ((without_header, None, MISSING), (inspector_command(demo), "wrong-key-0123456789", WRONG)):
        output = run_client(command, key, tmp_path)
        assert message in output, output
        assert "OAuth" not in output, "a 401 would have sent the Inspector into OAuth discovery"


def claude(args: list[str], key: str | None, home: Path, project: Path) -> str:
    return run_client(npm_tools.claude_cli() + args, key, home, cwd=project)


def claude_home(tmp_path: Path) -> tuple[Path, Path]:
    """A HOME and a project for Claude Code; the user's one-time approval of the project's
    .mcp.json servers is given in the user settings, as `claude` asks interactively."""
    home, project = tmp_path / "home", tmp_path / "project"
    (home / ".claude").mkdir(parents=True)
    project.mkdir()
    (home / ".claude" / "settings.json").write_text(json.dumps({"enableAllProjectMcpServers": True}))
    return home, project


def test_claude_code_connects_with_the_project_file_and_the_command(demo, tmp_path):
    home, project = claude_home(tmp_path)
    document = demo.json_block("Claude Code (.mcp.json):")
    (project / ".mcp.json").write_text(json.dumps(document))
    listed = claude(["mcp", "list"], demo.key, home, project)
    assert re.search(r"gateway-demo: .* - ✔ Connected", listed), listed

    home2, project2 = claude_home(tmp_path / "command")
    added = run_client(npm_tools.claude_cli() + demo.command("  or:")[1:], demo.key, home2, cwd=project2)
    assert "gateway-demo" in added, added
    listed = claude(["mcp", "list"], None, home2, project2)  # the shell expanded the key at add time
    assert re.search(r"gateway-demo: .* - ✔ Connected", listed), listed


@pytest.mark.parametrize(("key", "message"), [("", MISSING), ("wrong-key-0123456789", WRONG)])
def test_claude_code_reports_a_key_problem_not_a_broken_server(demo, tmp_path, key, message):
    home, project = claude_home(tmp_path)
    (project / ".mcp.json").write_text(json.dumps(demo.json_block("Claude Code (.mcp.json):")))
    listed = claude(["mcp", "list"], key, home, project)
    # A 401 reads "Failed to connect", logged as an invalid OAuth error response; the 403
    # reads as an authentication problem, and the gateway's message is in the server's
    # log that Claude Code keeps.
    assert re.search(r"gateway-demo: .* - ! Needs authentication", listed), listed
    logs = "".join(p.read_text() for p in home.glob(".cache/claude-cli-nodejs/*/mcp-logs-gateway-demo/*"))
    assert message in logs


def test_busy_port_is_one_line_naming_the_port():
    with tempfile.TemporaryDirectory() as tmp:
        import socket

        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            config = Path(tmp) / "gateway.json"
            config.write_text(json.dumps({"servers": {"a": {"url": "http://127.0.0.1:9/mcp", "anonymous": True}}}))
            for command in (["serve", "--config", str(config)], ["demo"]):
                done = subprocess.run([sys.executable, "-m", "shared", *command, "--port", str(port)],
                                      cwd=ROOT, capture_output=True, text=True, timeout=60)
                assert done.returncode == 2
                assert done.stderr.strip().splitlines()[-1] == f"error: port {port} on 127.0.0.1 is in use: choose another with --port"
                assert "Traceback" not in done.stderr
