"""infra/scripts/entra-app.sh against a fake `az` first on PATH (tests/fake_az.py).

The fake answers like the real CLI (Graph-shaped documents, --query through jmespath, tsv
output, display-name prefix matching), so these tests check the calls the script makes, the
state it converges to on a first and a second run, and that what it prints is a valid
`auth.entra` section of a gateway config.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra_tools import infra_bin
from shared.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "infra" / "scripts" / "entra-app.sh"
VSCODE = "aebc6443-996d-45c2-90f0-388ff96faa56"
AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class FakeAz:
    def __init__(self, home: Path) -> None:
        self.home = home
        bin_dir = home / "bin"
        bin_dir.mkdir()
        az = bin_dir / "az"
        az.write_text(f"#!{infra_bin('python')}\nimport sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                      "from fake_az import main\nsys.exit(main(sys.argv[1:]))\n")
        az.chmod(0o755)
        self.path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        (self.home / "calls.jsonl").write_text("")
        env = {**os.environ, "PATH": self.path, "FAKE_AZ_DIR": str(self.home)}
        return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120)

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in (self.home / "calls.jsonl").read_text().splitlines()]

    def state(self) -> dict[str, Any]:
        return json.loads((self.home / "state.json").read_text())

    def seed(self, state: dict[str, Any]) -> None:
        (self.home / "state.json").write_text(json.dumps(state))


@pytest.fixture
def az(tmp_path: Path) -> FakeAz:
    return FakeAz(tmp_path)


def _verbs(az: FakeAz) -> list[str]:
    """Each call as its command words (`ad app create`, `rest`, ...)."""
    verbs = []
    for call in az.calls():
        words = []
        for word in call:
            if word.startswith("-"):
                break
            words.append(word)
        verbs.append(" ".join(words))
    return verbs


def _option(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def _printed_entra(stdout: str) -> dict[str, Any]:
    block = stdout[stdout.index('"entra": {') + len('"entra": ') :]
    return json.loads(block)


def test_script_is_valid_bash_and_passes_shellcheck() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, timeout=30).returncode == 0
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: apt-get install shellcheck"
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_first_run_registers_the_resource_and_prints_the_config(az: FakeAz) -> None:
    result = az.run("--name", "mcp-gateway")
    assert result.returncode == 0, result.stderr
    assert _verbs(az) == [
        "account show",
        "cloud show",
        "ad app list",
        "ad app create",
        "ad app show",
        "ad app update",
        "ad app show",
        "rest",
        "rest",
        "ad sp list",
        "ad sp create",
    ]
    (app,) = az.state()["apps"]
    app_id = app["appId"]
    calls = az.calls()
    assert _option(calls[3], "--sign-in-audience") == "AzureADMyOrg"
    assert app["identifierUris"] == [f"api://{app_id}"]
    for patch in calls[7:9]:
        assert _option(patch, "--method") == "PATCH"
        assert _option(patch, "--uri") == f"https://graph.microsoft.com/v1.0/applications/{app['id']}"
    api = app["api"]
    (scope,) = api["oauth2PermissionScopes"]
    assert scope["value"] == "mcp.access" and scope["isEnabled"] is True and scope["type"] == "User"
    assert GUID.match(scope["id"])
    assert api["requestedAccessTokenVersion"] == 2
    assert api["preAuthorizedApplications"] == [{"appId": VSCODE, "delegatedPermissionIds": [scope["id"]]}]
    assert [sp["appId"] for sp in az.state()["sps"]] == [app_id]

    entra = _printed_entra(result.stdout)
    assert entra == {
        "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "audiences": [app_id, f"api://{app_id}"],
        "requiredScopes": [f"api://{app_id}/mcp.access"],
    }
    assert f"scope:                   api://{app_id}/mcp.access" in result.stdout
    config = parse_config({"servers": {"docs": {"url": "https://backend.internal/mcp", "auth": {"entra": entra}}}})
    assert config.servers["docs"].auth.entra.tenant_id == entra["tenantId"]


def test_second_run_changes_nothing_and_keeps_the_scope_id(az: FakeAz) -> None:
    assert az.run("--name", "mcp-gateway").returncode == 0
    before = az.state()
    again = az.run("--name", "mcp-gateway")
    assert again.returncode == 0, again.stderr
    verbs = _verbs(az)
    assert "ad app create" not in verbs and "ad sp create" not in verbs
    after = az.state()
    assert after["apps"] == before["apps"] and after["sps"] == before["sps"]


def test_a_longer_name_sharing_the_prefix_is_another_app(az: FakeAz) -> None:
    """az ad app list --display-name matches a prefix; mcp-gateway-dev is not mcp-gateway."""
    assert az.run("--name", "mcp-gateway-dev").returncode == 0
    result = az.run("--name", "mcp-gateway")
    assert result.returncode == 0, result.stderr
    assert "ad app create" in _verbs(az)
    assert sorted(a["displayName"] for a in az.state()["apps"]) == ["mcp-gateway", "mcp-gateway-dev"]


def test_more_clients_are_pre_authorized_for_the_same_scope(az: FakeAz) -> None:
    result = az.run("--client-id", AZURE_CLI.upper(), "--client-id", VSCODE)
    assert result.returncode == 0, result.stderr
    (app,) = az.state()["apps"]
    scope_id = app["api"]["oauth2PermissionScopes"][0]["id"]
    assert app["api"]["preAuthorizedApplications"] == [
        {"appId": VSCODE, "delegatedPermissionIds": [scope_id]},
        {"appId": AZURE_CLI, "delegatedPermissionIds": [scope_id]},
    ]


def test_two_apps_with_the_name_stop_the_script(az: FakeAz) -> None:
    twin = {"displayName": "mcp-gateway", "identifierUris": [], "api": {"oauth2PermissionScopes": []}}
    az.seed({"apps": [{**twin, "id": "1" * 8 + "-0000-0000-0000-" + "0" * 12, "appId": "a" * 8 + "-0000-0000-0000-" + "0" * 12},
                      {**twin, "id": "2" * 8 + "-0000-0000-0000-" + "0" * 12, "appId": "b" * 8 + "-0000-0000-0000-" + "0" * 12}],
             "sps": []})
    result = az.run()
    assert result.returncode != 0
    assert "2 app registrations are named 'mcp-gateway'" in result.stderr
    assert "ad app create" not in _verbs(az) and "rest" not in _verbs(az)


@pytest.mark.parametrize(
    "args",
    [("--client-id", "vscode"), ("--client-id", '"},{"appId":"x'), ("--name", "x'] | [0]"), ("--name",), ("--bogus",)],
)
def test_bad_arguments_are_refused_before_any_call(az: FakeAz, args: tuple[str, ...]) -> None:
    result = az.run(*args)
    assert result.returncode == 2
    assert az.calls() == []
