"""The gateway config on its way to Azure: the samples, and the check that stops a bad deploy.

The azd hook is run exactly as azure.yaml spells it, by `sh` in a project directory, against
good, invalid, missing and misplaced config files; the Azure-bound sample passes the same check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from infra_tools import load_yaml
from npm_tools import ServerHandle, _spawn, _wait_log_line

ROOT = Path(__file__).resolve().parents[1]
LOCAL_SAMPLE = ROOT / "gateway.sample.json"
AZURE_SAMPLE = ROOT / "gateway.azure.sample.json"
CHECK_SCRIPT = "infra/scripts/check_config.py"
HOOK_TIMEOUT_S = 120


# ---------------------------------------------------------------------------------------
# The samples


def _serve(config: Path) -> ServerHandle:
    cmd = [sys.executable, "-m", "shared", "serve", "--config", str(config), "--port", "0", "--host", "127.0.0.1"]
    proc, log_path, tmpdir = _spawn(cmd, {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)})
    handle = ServerHandle(proc, 0, "", log_path, tmpdir)
    try:
        handle.url = _wait_log_line(proc, log_path, "MCP gateway listening on ", 30)
    except Exception:
        handle.stop()
        raise
    return handle


def test_local_sample_serves_as_shipped() -> None:
    """The socket is bound before start-up finishes: only an answer from /healthz proves it started."""
    handle = _serve(LOCAL_SAMPLE)
    try:
        deadline = time.monotonic() + 30
        status = None
        while status != 200:
            assert handle.proc.poll() is None, f"serve exited:\n{handle.log_path.read_text()}"
            assert time.monotonic() < deadline, f"/healthz never answered 200:\n{handle.log_path.read_text()}"
            try:
                status = httpx.get(f"{handle.url}/healthz", timeout=5).status_code
            except httpx.TransportError:
                time.sleep(0.05)  # poll interval while start-up runs, not synchronisation
    finally:
        handle.stop()


def _secret_refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["keyVaultSecret"]["name"]] if "keyVaultSecret" in node else []
        return found + [name for value in node.values() for name in _secret_refs(value)]
    if isinstance(node, list):
        return [name for value in node for name in _secret_refs(value)]
    return []


def test_azure_sample_shows_key_vault_references_and_entra_sign_in() -> None:
    document = json.loads(AZURE_SAMPLE.read_text(encoding="utf-8"))
    assert _secret_refs(document), "the Azure sample should show a Key Vault reference"
    entra = [s["auth"]["entra"] for s in document["servers"].values() if "entra" in s.get("auth", {})]
    assert entra and all(scope.endswith("/mcp.access") for e in entra for scope in e["requiredScopes"])
    result = subprocess.run(
        [sys.executable, "-m", "shared", "config", "check", str(AZURE_SAMPLE)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_local_sample_names_no_key_vault_secret() -> None:
    """serve reads every secret at start-up: a reference with no vault stops it."""
    assert not _secret_refs(json.loads(LOCAL_SAMPLE.read_text(encoding="utf-8")))


# ---------------------------------------------------------------------------------------
# The azd hook, run as azd runs it


def _hooks() -> dict:
    return load_yaml(ROOT / "azure.yaml")["hooks"]


def test_config_is_checked_before_anything_is_packaged_on_every_platform() -> None:
    hook = _hooks()["prepackage"]
    assert hook["posix"]["shell"] == "sh" and hook["windows"]["shell"] == "pwsh"
    for platform in ("posix", "windows"):
        assert CHECK_SCRIPT in hook[platform]["run"], platform
        assert hook[platform].get("continueOnError", False) is False, platform
    # pwsh does not fail a script on a native command's exit code: the hook must pass it on.
    assert "exit $LASTEXITCODE" in hook["windows"]["run"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory as azd sees it: the gateway package, the infra scripts, the venv."""
    for name in ("shared", "infra", ".venv", ".funcignore"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def _run_hook(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "MCP_GATEWAY_CONFIG"}
    return subprocess.run(
        ["sh", "-c", _hooks()["prepackage"]["posix"]["run"]],
        cwd=project, env={**environ, **env}, capture_output=True, text=True, timeout=HOOK_TIMEOUT_S,
    )


def test_hook_passes_a_valid_config(project: Path) -> None:
    (project / "gateway.json").write_text(AZURE_SAMPLE.read_text(encoding="utf-8"))
    result = _run_hook(project)
    assert result.returncode == 0, result.stderr
    assert "gateway.json: OK" in result.stdout


def test_hook_stops_an_invalid_config_with_the_field_named(project: Path) -> None:
    (project / "gateway.json").write_text('{"servers": {"docs": {"url": "https://backend/mcp"}}}')
    result = _run_hook(project)
    assert result.returncode != 0
    assert "servers.docs.anonymous" in result.stderr and "deploy stopped" in result.stderr


def test_hook_stops_when_the_config_is_missing_and_says_how_to_make_one(project: Path) -> None:
    result = _run_hook(project)
    assert result.returncode != 0
    assert "gateway.json not found" in result.stderr and "cp gateway.azure.sample.json gateway.json" in result.stderr


def test_hook_reads_the_path_from_the_azd_environment(project: Path) -> None:
    (project / "config").mkdir()
    (project / "config" / "prod.json").write_text('{"servers": {}, "surprise": 1}')
    (project / "gateway.json").write_text(AZURE_SAMPLE.read_text(encoding="utf-8"))
    result = _run_hook(project, MCP_GATEWAY_CONFIG="config/prod.json")
    assert result.returncode != 0 and "config/prod.json" in result.stderr


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ('{"servers": {"docs": {"url": "https://b/mcp", "anonymous": true}}}', "holds a JSON document"),
        ("/etc/gateway.json", "relative to the project root"),
        ("../gateway.json", "relative to the project root"),
        ("C:/gateway.json", "relative to the project root"),
        ("config\\gateway.json", "use '/'"),
        ("tests/gateway.json", "excluded from the package by .funcignore"),
    ],
)
def test_hook_refuses_a_config_that_would_not_reach_the_app(project: Path, value: str, said: str) -> None:
    """Inline JSON is mangled by azd's substitution; other paths are not in the package on Linux."""
    (project / "tests").mkdir()
    (project / "tests" / "gateway.json").write_text(AZURE_SAMPLE.read_text(encoding="utf-8"))
    result = _run_hook(project, MCP_GATEWAY_CONFIG=value)
    assert result.returncode != 0
    assert said in result.stderr, result.stderr
