"""Offline checks of the Bicep in infra/ and of the deployment files around it.

Neither the Bicep CLI nor Azure is reachable here, so the templates are parsed with
pycep-parser and scanned with checkov, both from their own venv (requirements-infra.txt:
checkov pins versions that clash with the gateway's). They run as subprocesses under a
timeout, since a Bicep parser has been seen to hang. The venv is $INFRA_VENV, else
./.venv-infra; without it these tests fail (./scripts/test installs it).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import pytest

from infra_tools import infra_bin, load_yaml
from shared.config.model import Timeouts
from shared.settings import SETTING_NAMES, SETTINGS
from shared.signing import MIN_KEY_CHARS

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
KEY_VAULT_MODULE = INFRA / "modules" / "keyvault.bicep"
IDENTITY_MODULE = INFRA / "modules" / "identity.bicep"
PARAMETERS_FILE = INFRA / "main.parameters.json"
CHECKOV_CONFIG = INFRA / ".checkov.yaml"
AZURE_YAML = ROOT / "azure.yaml"
HOST_JSON = ROOT / "host.json"
LOCAL_SETTINGS_SAMPLE = ROOT / "local.settings.sample.json"
INFRA_README = INFRA / "README.md"
ROOT_README = ROOT / "README.md"

PARSE_TIMEOUT_S = 180  # the first parse builds lark's tables (~20 s on a cold cache)
CHECKOV_TIMEOUT_S = 300

# Settings the Functions host (not the gateway) reads; the Bicep may set these too.
HOST_SETTINGS = frozenset(
    {
        "AzureWebJobsStorage__blobServiceUri",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
    }
)
# Local-only host settings that local.settings.sample.json may hold (Core Tools needs them).
LOCAL_HOST_SETTINGS = frozenset({"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"})
# Flex Consumption rejects these as app settings: the runtime is functionAppConfig.runtime.
FORBIDDEN_ON_FLEX = frozenset({"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"})

ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
PRINCIPAL_TYPES = frozenset({"ServicePrincipal", "User", "Group", "ForeignGroup", "Device"})
ROLE_IDS = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}

BICEP_FILES = sorted(INFRA.rglob("*.bicep"))


# ---------------------------------------------------------------------------------------
# The infra venv and the tools in it


# Runs inside the infra venv: parse each file given, print {path: template | {"error": ...}}.
_PARSE_SCRIPT = """
import json, sys
from pathlib import Path
from pycep import BicepParser
parser = BicepParser()
out = {}
for name in sys.argv[1:]:
    print("parsing", name, file=sys.stderr, flush=True)
    try:
        out[name] = parser.parse(file_path=Path(name))
    except Exception as exc:
        out[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
json.dump(out, sys.stdout, default=str)
"""


@pytest.fixture(scope="module")
def parsed() -> dict[str, Any]:
    """Every .bicep file under infra/, parsed by pycep in a subprocess, keyed by relative path."""
    python = infra_bin("python")
    names = [str(p.relative_to(ROOT)) for p in BICEP_FILES]
    try:
        proc = subprocess.run(
            [str(python), "-c", _PARSE_SCRIPT, *names],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=PARSE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        progress = (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"pycep did not finish in {PARSE_TIMEOUT_S} s; last progress:\n{progress}")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _template(parsed: dict[str, Any], path: Path) -> dict[str, Any]:
    template = parsed[str(path.relative_to(ROOT))]
    assert "error" not in template, template.get("error")
    return template


def _run_checkov(directory: Path, *extra: str) -> dict[str, Any]:
    checkov = infra_bin("checkov")
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "WARNING"}
    env.pop("BC_API_KEY", None)
    cmd = [str(checkov), "--framework", "bicep", "--skip-download", "-d", str(directory)]
    cmd += ["--compact", "-o", "json", *extra]
    try:
        proc = subprocess.run(
            cmd, cwd=directory.parent, env=env, capture_output=True, text=True, timeout=CHECKOV_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"checkov did not finish in {CHECKOV_TIMEOUT_S} s")
    assert proc.stdout.strip(), f"checkov printed nothing (exit {proc.returncode}): {proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    if isinstance(report, list):  # one entry per framework
        (report,) = [r for r in report if r.get("check_type") == "bicep"]
    report["returncode"] = proc.returncode
    return report


@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    return _run_checkov(INFRA)


# ---------------------------------------------------------------------------------------
# Walking pycep's output


def _body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's properties, through an `if (...)` condition or a loop."""
    config = resource["config"]
    while isinstance(config, dict) and "config" in config and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return config


def _resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {
        name: res
        for name, res in template.get("resources", {}).items()
        if res["type"] == type_ and not res.get("existing")
    }


def _all_resources(parsed: dict[str, Any], type_: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in BICEP_FILES:
        for name, res in _resources(_template(parsed, path), type_).items():
            yield path.name, name, res


def _one(parsed: dict[str, Any], type_: str) -> dict[str, Any]:
    found = list(_all_resources(parsed, type_))
    assert len(found) == 1, f"expected one {type_}, found {[(f, n) for f, n, _ in found]}"
    return _body(found[0][2])


def _unquote(key: str) -> str:
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def _function(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("function"), dict):
        return value["function"].get("type")
    return None


def _accessor_path(value: Any) -> list[str]:
    """`a.b.c` as pycep writes it (nested property_accessor operators), as ["a", "b", "c"]."""
    if isinstance(value, str):
        return [value]
    operands = value["operator"]["operands"]
    assert value["operator"]["type"] == "property_accessor", value
    return [operands["operand_1"], *_accessor_path(operands["operand_2"])]


def _param(template: dict[str, Any], name: str) -> dict[str, Any] | None:
    return template.get("parameters", {}).get(name) if isinstance(name, str) else None


def _allowed(param: dict[str, Any]) -> list[Any] | None:
    for deco in param.get("decorators", []):
        if deco["type"] == "allowed":
            return deco["argument"]
    return None


def _is_secure(param: dict[str, Any]) -> bool:
    return any(deco["type"] == "secure" for deco in param.get("decorators", []))


def _app_settings(parsed: dict[str, Any]) -> dict[str, Any]:
    site = _one(parsed, "Microsoft.Web/sites")
    settings = site["properties"]["siteConfig"]["appSettings"]
    names = [s["name"] for s in settings]
    assert len(names) == len(set(names)), f"duplicate app settings: {names}"
    return {s["name"]: s["value"] for s in settings}


def _function_app_template(parsed: dict[str, Any]) -> dict[str, Any]:
    (path,) = [p for p in BICEP_FILES if _resources(_template(parsed, p), "Microsoft.Web/sites")]
    return _template(parsed, path)


def _main_module_for(parsed: dict[str, Any], module_file: str) -> dict[str, Any]:
    main = _template(parsed, MAIN)
    found = [m for m in main.get("modules", {}).values() if m["detail"]["path"].endswith(module_file)]
    assert len(found) == 1, f"main.bicep should call {module_file} once"
    return _body(found[0])


# ---------------------------------------------------------------------------------------
# 1. Every .bicep file parses (pycep-parser, under a timeout), in the subset it knows


def test_infra_has_main_and_modules() -> None:
    assert MAIN.exists()
    assert len(BICEP_FILES) > 1


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_bicep_file_parses(parsed: dict[str, Any], path: Path) -> None:
    template = _template(parsed, path)
    assert template.get("resources") or template.get("modules"), f"{path.name} parsed to nothing"


def test_main_is_resource_group_scoped(parsed: dict[str, Any]) -> None:
    assert _template(parsed, MAIN)["globals"]["scope"]["value"] == "resourceGroup"


def test_every_module_path_exists(parsed: dict[str, Any]) -> None:
    for path in BICEP_FILES:
        for name, module in _template(parsed, path).get("modules", {}).items():
            assert module["type"] == "local", f"{path.name}:{name}: registry modules are not checked offline"
            assert (path.parent / module["detail"]["path"]).is_file(), f"{path.name}:{name}"


# Constructs pycep-parser 0.5.1 cannot parse (see infra/README.md), kept out even where a
# newer parser might accept them, so checkov keeps seeing every file.
_OUTSIDE_SUBSET = [
    (re.compile(r"^\s*extension\s", re.M), "extension"),
    (re.compile(r"^\s*import\s", re.M), "import"),
    (re.compile(r"^\s*(@export\(\)\s*)?func\s", re.M), "func"),
    (re.compile(r"^\s*(@export\(\)\s*)?type\s+\w+\s*=", re.M), "user-defined type"),
    (re.compile(r"\bdeployer\(\)"), "deployer()"),
    (re.compile(r"=>"), "lambda"),
    (re.compile(r"^\s*param\s+\w+\s+\w+\?", re.M), "nullable type"),
    (re.compile(r"\bbr[:/]"), "registry module"),
]


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_bicep_stays_in_the_parsable_subset(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    code = re.sub(r"//[^\n]*", "", text)
    found = [what for pattern, what in _OUTSIDE_SUBSET if pattern.search(code)]
    assert not found, f"{path.name} uses {found}"


# ---------------------------------------------------------------------------------------
# 2. checkov passes; skipped checks are listed in one place, each with its reason


def _skip_list() -> dict[str, str]:
    """CKV ids under skip-check in infra/.checkov.yaml, with the comment line above each."""
    skips: dict[str, str] = {}
    lines = CHECKOV_CONFIG.read_text(encoding="utf-8").splitlines()
    in_skips = False
    for i, line in enumerate(lines):
        if re.match(r"^[\w-]+:", line):
            in_skips = line.startswith("skip-check:")
            continue
        item = re.match(r"^\s*-\s*(CKV2?_[A-Z]+_\d+)\s*$", line)
        if in_skips and item:
            above = lines[i - 1].strip()
            skips[item.group(1)] = above[1:].strip() if above.startswith("#") else ""
    return skips


def test_checkov_passes(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    failed = [
        f"{c['check_id']} {c['check_name']} ({c['file_path']}: {c['resource']})"
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert summary["parsing_errors"] == 0
    assert summary["passed"] >= 15, summary
    assert checkov_report["returncode"] == 0


def test_checkov_checked_every_file(parsed: dict[str, Any], checkov_report: dict[str, Any]) -> None:
    results = checkov_report["results"]
    checked = {Path(c["file_abs_path"]).name for c in results["passed_checks"] + results["failed_checks"]}
    # Files holding a resource type checkov has checks for; the others (identity, monitoring) it only parses.
    for type_ in ("Microsoft.Web/sites", "Microsoft.Storage/storageAccounts", "Microsoft.KeyVault/vaults"):
        files = {f for f, _, _ in _all_resources(parsed, type_)}
        assert files and files <= checked, f"checkov checked no {type_}"


def test_every_skipped_check_has_a_reason() -> None:
    skips = _skip_list()
    assert skips, "infra/.checkov.yaml lists no skip-check"
    for check, reason in skips.items():
        assert len(reason) > 20, f"{check} has no reason comment above it in infra/.checkov.yaml"


def test_skips_live_in_one_place() -> None:
    for path in BICEP_FILES:
        assert "checkov:skip" not in path.read_text(encoding="utf-8"), f"inline skip in {path.name}"
    configs = [p for p in ROOT.glob(".checkov.y*ml")] + [p for p in INFRA.rglob(".checkov.y*ml")]
    assert configs == [CHECKOV_CONFIG]


def test_skip_list_matches_what_fails(tmp_path: Path) -> None:
    """Without the skip list exactly the skipped checks fail: no stale skip hides a fix."""
    bare = tmp_path / "infra"
    shutil.copytree(INFRA, bare, ignore=shutil.ignore_patterns(".checkov.y*ml", "*.md", "*.json"))
    report = _run_checkov(bare)
    failing = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert failing == set(_skip_list())


# ---------------------------------------------------------------------------------------
# 3. Structural checks over the parsed templates


def test_function_app_is_flex_linux_https_with_identity(parsed: dict[str, Any]) -> None:
    site = _one(parsed, "Microsoft.Web/sites")
    assert "linux" in site["kind"] and "functionapp" in site["kind"]
    assert site["identity"]["type"] == "UserAssigned"
    assert site["identity"]["userAssignedIdentities"]
    props = site["properties"]
    assert props["httpsOnly"] is True
    assert props["siteConfig"]["minTlsVersion"] == "1.2"
    # Flex Consumption has no FTPS and lists ftpsState among its deprecated properties.
    assert "ftpsState" not in props["siteConfig"]

    fac = props["functionAppConfig"]
    assert fac["runtime"]["name"] == "python"
    assert set(fac["scaleAndConcurrency"]) >= {"maximumInstanceCount", "instanceMemoryMB"}
    storage = fac["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"


def test_python_version_is_a_parameter_defaulting_to_3_11(parsed: dict[str, Any]) -> None:
    for template in (_function_app_template(parsed), _template(parsed, MAIN)):
        param = _param(template, "pythonVersion")
        assert param is not None
        assert param["default"] == "3.11"
        assert _allowed(param) == ["3.11", "3.12", "3.13"]
    runtime = _one(parsed, "Microsoft.Web/sites")["properties"]["functionAppConfig"]["runtime"]
    assert runtime["version"] == "pythonVersion"
    assert _main_module_for(parsed, "functionapp.bicep")["params"]["pythonVersion"] == "pythonVersion"


def _wired_from_main(parsed: dict[str, Any], module_file: str, name: str) -> dict[str, Any]:
    """The main.bicep parameter `name`, passed unchanged to the module parameter of the same name."""
    param = _param(_template(parsed, MAIN), name)
    assert param is not None, f"main.bicep has no parameter {name}"
    assert _main_module_for(parsed, module_file)["params"].get(name) == name, f"main.bicep does not pass {name}"
    return param


def _bounds(param: dict[str, Any]) -> tuple[Any, Any]:
    found = {deco["type"]: deco["argument"] for deco in param.get("decorators", [])}
    return found.get("min_value"), found.get("max_value")


def test_http_concurrency_suits_an_async_proxy(parsed: dict[str, Any]) -> None:
    """Python's default on Flex is one request per instance: every open SSE stream would take an instance."""
    scale = _one(parsed, "Microsoft.Web/sites")["properties"]["functionAppConfig"]["scaleAndConcurrency"]
    assert scale["triggers"]["http"]["perInstanceConcurrency"] == "httpPerInstanceConcurrency"
    param = _wired_from_main(parsed, "functionapp.bicep", "httpPerInstanceConcurrency")
    # Microsoft's default for single-threaded event-loop workers (Node.js) at 2048 MB is 16.
    assert param["default"] >= 16
    assert _bounds(param) == (1, 1000)


def test_always_ready_and_scale_limit_are_parameters(parsed: dict[str, Any]) -> None:
    scale = _one(parsed, "Microsoft.Web/sites")["properties"]["functionAppConfig"]["scaleAndConcurrency"]
    assert scale["alwaysReady"] == [{"name": "http", "instanceCount": "alwaysReadyInstanceCount"}]
    assert scale["maximumInstanceCount"] == "maximumInstanceCount"
    always_ready = _wired_from_main(parsed, "functionapp.bicep", "alwaysReadyInstanceCount")
    maximum = _wired_from_main(parsed, "functionapp.bicep", "maximumInstanceCount")
    assert _bounds(always_ready)[0] == 0 and always_ready["default"] >= 0
    assert _bounds(maximum) == (1, 1000)


def _conditional(value: Any) -> tuple[Any, Any, Any]:
    """`cond ? a : b` as pycep writes it, as (cond, a, b)."""
    assert isinstance(value, dict) and value.get("operator", {}).get("type") == "conditional", value
    operands = value["operator"]["operands"]
    return operands["condition"], operands["true_value"], operands["false_value"]


def _mentions(value: Any, name: str) -> bool:
    return f'"{name}"' in json.dumps(value)


def test_vnet_option_puts_the_app_in_a_delegated_subnet(parsed: dict[str, Any]) -> None:
    param = _param(_template(parsed, MAIN), "vnetEnabled")
    assert param is not None and param["type"] == "bool" and param["default"] is False
    network = _template(parsed, MAIN)["modules"]["network"]
    assert network["config"]["condition"] == "vnetEnabled"
    (vnet,) = _resources(_template(parsed, INFRA / "modules" / "network.bicep"), "Microsoft.Network/virtualNetworks").values()
    delegated = [
        subnet["name"]
        for subnet in _body(vnet)["properties"]["subnets"]
        for delegation in subnet["properties"].get("delegations", [])
        if delegation["properties"]["serviceName"] == "Microsoft.App/environments"
    ]
    assert len(delegated) == 1, "Flex Consumption needs one subnet delegated to Microsoft.App/environments"
    site = _one(parsed, "Microsoft.Web/sites")["properties"]
    condition, _, subnet_id = _conditional(site["virtualNetworkSubnetId"])
    assert subnet_id == "virtualNetworkSubnetId" and _mentions(condition, "virtualNetworkSubnetId")
    condition, on, off = _conditional(_main_module_for(parsed, "functionapp.bicep")["params"]["virtualNetworkSubnetId"])
    assert condition == "vnetEnabled" and _accessor_path(on) == ["network", "outputs", "appSubnetId"] and off == ""


def test_vnet_option_reaches_storage_and_key_vault_through_private_endpoints(parsed: dict[str, Any]) -> None:
    template = _template(parsed, INFRA / "modules" / "network.bicep")
    endpoints = _resources(template, "Microsoft.Network/privateEndpoints")
    groups = {
        group
        for endpoint in endpoints.values()
        for connection in _body(endpoint)["properties"]["privateLinkServiceConnections"]
        for group in connection["properties"]["groupIds"]
    }
    assert groups == {"blob", "vault"}
    zone_groups = _resources(template, "Microsoft.Network/privateEndpoints/privateDnsZoneGroups")
    assert {_body(g)["parent"] for g in zone_groups.values()} == set(endpoints), "every endpoint registers in a DNS zone"
    zones = _resources(template, "Microsoft.Network/privateDnsZones")
    links = _resources(template, "Microsoft.Network/privateDnsZones/virtualNetworkLinks")
    assert {_body(link)["parent"] for link in links.values()} == set(zones), "every zone is linked to the network"
    names = json.dumps([_body(z)["name"] for z in zones.values()] + [template["variables"]])
    assert "privatelink.blob." in names and "vaultcore" in names


@pytest.mark.parametrize("module_file", ["storage.bicep", "keyvault.bicep"])
def test_storage_and_key_vault_are_private_unless_there_is_no_network(parsed: dict[str, Any], module_file: str) -> None:
    """Private by default in the module (what checkov sees); main.bicep opens them only without a network."""
    template = _template(parsed, INFRA / "modules" / module_file)
    (resource,) = [r for r in template["resources"].values() if r["type"].endswith(("/storageAccounts", "/vaults"))]
    props = _body(resource)["properties"]
    assert props["publicNetworkAccess"] == "publicNetworkAccess"
    assert props["networkAcls"]["defaultAction"] == "networkDefaultAction"
    assert template["parameters"]["publicNetworkAccess"]["default"] == "Disabled"
    assert template["parameters"]["networkDefaultAction"]["default"] == "Deny"
    params = _main_module_for(parsed, module_file)["params"]
    condition, with_network, without = _conditional(params["publicNetworkAccess"])
    assert _mentions(condition, "vnetEnabled") and (with_network, without) == ("Disabled", "Enabled")
    assert _conditional(params["networkDefaultAction"]) == ("vnetEnabled", "Deny", "Allow")


def test_deployment_strategy_is_a_parameter(parsed: dict[str, Any]) -> None:
    """Recreate restarts every instance (every open stream ends); RollingUpdate drains them."""
    fac = _one(parsed, "Microsoft.Web/sites")["properties"]["functionAppConfig"]
    assert fac["siteUpdateStrategy"] == {"type": "siteUpdateStrategy"}
    param = _wired_from_main(parsed, "functionapp.bicep", "siteUpdateStrategy")
    assert _allowed(param) == ["Recreate", "RollingUpdate"] and param["default"] == "Recreate"


def test_access_log_is_a_parameter_not_a_hand_made_setting(parsed: dict[str, Any]) -> None:
    """Provisioning replaces the app settings: a setting added by hand is gone after the next one."""
    assert _conditional(_app_settings(parsed)["MCP_GATEWAY_ACCESS_LOG"]) == ("accessLog", "true", "false")
    assert _wired_from_main(parsed, "functionapp.bicep", "accessLog")["default"] is False


def test_plan_is_flex_consumption(parsed: dict[str, Any]) -> None:
    plan = _one(parsed, "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan["properties"]["reserved"] is True


def test_basic_publishing_credentials_are_off(parsed: dict[str, Any]) -> None:
    policies = [_body(r) for _, _, r in _all_resources(parsed, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")]
    assert {p["name"] for p in policies} == {"ftp", "scm"}
    assert all(p["properties"]["allow"] is False for p in policies)


def test_storage_denies_shared_keys_and_public_blobs(parsed: dict[str, Any]) -> None:
    props = _one(parsed, "Microsoft.Storage/storageAccounts")["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    container = _one(parsed, "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert container["properties"]["publicAccess"] == "None"


def test_key_vault_uses_rbac_and_soft_delete(parsed: dict[str, Any]) -> None:
    props = _one(parsed, "Microsoft.KeyVault/vaults")["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["enableSoftDelete"] is True
    assert "accessPolicies" not in props


def test_key_vault_purge_protection_is_a_parameter(parsed: dict[str, Any]) -> None:
    """Always-on purge protection reserved the fixed vault name for 90 days: `azd down && azd up` failed."""
    props = _one(parsed, "Microsoft.KeyVault/vaults")["properties"]
    # The vault API accepts true or nothing: "false" is refused, since the protection is irreversible.
    assert _conditional(props["enablePurgeProtection"]) == ("enablePurgeProtection", True, None)
    assert props["softDeleteRetentionInDays"] == "softDeleteRetentionInDays"
    main = _template(parsed, MAIN)
    purge = _param(main, "keyVaultPurgeProtection")
    assert purge is not None and purge["type"] == "bool" and purge["default"] is False
    params = _main_module_for(parsed, "keyvault.bicep")["params"]
    assert params["enablePurgeProtection"] == "keyVaultPurgeProtection"
    assert params["softDeleteRetentionInDays"] == "keyVaultRetentionInDays"
    assert _bounds(_param(main, "keyVaultRetentionInDays")) == (7, 90)


def test_key_vault_name_can_be_replaced(parsed: dict[str, Any]) -> None:
    """A new name is the way back when the old one is held by a purge-protected deleted vault."""
    name = _param(_template(parsed, MAIN), "keyVaultName")
    assert name is not None and name["default"] == ""
    condition, derived, given = _conditional(_main_module_for(parsed, "keyvault.bicep")["params"]["name"])
    assert _mentions(condition, "keyVaultName") and given == "keyVaultName" and "resourceToken" in json.dumps(derived)


def test_monitoring_ingests_with_entra_only(parsed: dict[str, Any]) -> None:
    insights = _one(parsed, "Microsoft.Insights/components")["properties"]
    assert insights["DisableLocalAuth"] is True
    assert insights["WorkspaceResourceId"]
    _one(parsed, "Microsoft.OperationalInsights/workspaces")


def _diagnostic_logs(parsed: dict[str, Any], module_file: str) -> tuple[str, set[str], Any]:
    """(scope, log categories, workspace) of the one diagnostic setting in a module."""
    template = _template(parsed, INFRA / "modules" / module_file)
    (setting,) = [_body(r) for r in _resources(template, "Microsoft.Insights/diagnosticSettings").values()]
    categories = {log["category"] for log in setting["properties"]["logs"] if log["enabled"] is True}
    return setting["scope"], categories, setting["properties"]["workspaceId"]


@pytest.mark.parametrize(
    ("module_file", "scope", "category"),
    [("functionapp.bicep", "functionApp", "FunctionAppLogs"), ("keyvault.bicep", "vault", "AuditEvent")],
)
def test_diagnostics_reach_log_analytics(parsed: dict[str, Any], module_file: str, scope: str, category: str) -> None:
    found_scope, categories, workspace = _diagnostic_logs(parsed, module_file)
    assert found_scope == scope and category in categories
    wired = _main_module_for(parsed, module_file)["params"][workspace]
    assert _accessor_path(wired) == ["monitoring", "outputs", "logAnalyticsId"]


def test_healthz_is_probed_from_several_regions(parsed: dict[str, Any]) -> None:
    test = _one(parsed, "Microsoft.Insights/webtests")
    assert test["kind"] == "standard" and test["properties"]["Kind"] == "standard"
    assert test["properties"]["Request"]["RequestUrl"] == "https://${gatewayHostName}/healthz"
    assert test["properties"]["ValidationRules"]["ExpectedHttpStatusCode"] == 200
    assert "hidden-link:${applicationInsightsId}" in json.dumps(test["tags"]), "a web test must link its component"
    alerts = _template(parsed, INFRA / "modules" / "alerts.bicep")["parameters"]
    assert len(alerts["testLocations"]["default"]) >= 2
    host = _main_module_for(parsed, "alerts.bicep")["params"]["gatewayHostName"]
    assert _accessor_path(host) == ["functionApp", "outputs", "defaultHostName"]


def test_failures_raise_alerts(parsed: dict[str, Any]) -> None:
    metric_alerts = [_body(r)["properties"] for _, _, r in _all_resources(parsed, "Microsoft.Insights/metricAlerts")]
    kinds = {a["criteria"]["'odata.type'"] for a in metric_alerts}
    assert "Microsoft.Azure.Monitor.WebtestLocationAvailabilityCriteria" in kinds, "no alert on the /healthz test"
    forbidden = [
        c
        for a in metric_alerts
        if a["criteria"]["'odata.type'"].endswith("MultipleMetricCriteria")
        for c in a["criteria"]["allOf"]
        if c["metricName"] == "ServiceApiResult"
    ]
    assert forbidden and forbidden[0]["dimensions"] == [{"name": "StatusCode", "operator": "Include", "values": ["403"]}]
    (server_errors,) = [_body(r)["properties"] for _, _, r in _all_resources(parsed, "Microsoft.Insights/scheduledQueryRules")]
    query = server_errors["criteria"]["allOf"][0]["query"]
    assert re.search(r"resultCode\)?\s*>=\s*500", query), query
    assert _param(_template(parsed, MAIN), "alertEmail")["default"] == ""


def test_every_role_assignment_has_guid_name_and_principal_type(parsed: dict[str, Any]) -> None:
    found = 0
    for path in BICEP_FILES:
        template = _template(parsed, path)
        for name, res in _resources(template, ROLE_ASSIGNMENT).items():
            found += 1
            body = _body(res)
            where = f"{path.name}:{name}"
            assert _function(body["name"]) == "guid", f"{where}: name must be guid(...)"
            guid_args = body["name"]["function"]["parameters"]
            assert len([a for a in guid_args.values() if a is not None]) >= 3, f"{where}: guid(scope, principal, role)"
            props = body["properties"]
            assert _function(props["roleDefinitionId"]) == "subscription_resource_id", where
            principal_type = props["principalType"]
            param = _param(template, principal_type)
            if param is not None:  # a parameter: every allowed value must be a principal type
                allowed = _allowed(param)
                assert allowed and set(allowed) <= PRINCIPAL_TYPES, f"{where}: {principal_type}"
            else:
                assert principal_type in PRINCIPAL_TYPES, f"{where}: {principal_type}"
    assert found >= 4


def test_identity_gets_the_roles_it_needs(parsed: dict[str, Any]) -> None:
    granted = set()
    for path in BICEP_FILES:
        template = _template(parsed, path)
        variables = {k: v["value"] for k, v in template.get("variables", {}).items()}
        for res in _resources(template, ROLE_ASSIGNMENT).values():
            role = _body(res)["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
            granted.add(variables.get(role, role))
    missing = {name for name, role_id in ROLE_IDS.items() if role_id not in granted}
    assert not missing


def test_secure_parameters_default_to_nothing_or_a_new_guid(parsed: dict[str, Any]) -> None:
    """A literal default would be a secret written into the template, readable by anyone who can read it.
    Bicep's secure-parameter-default rule allows exactly '' (no value) and newGuid() (a new random value
    at each deployment, which is how the signing key gets one when nobody passes it)."""
    secure = 0
    for path in BICEP_FILES:
        for name, param in _template(parsed, path).get("parameters", {}).items():
            if _is_secure(param):
                secure += 1
                default = param["default"]
                allowed = default is None or default == "" or _function(default) == "new_guid"
                assert allowed, f"{path.name}: @secure() param {name} defaults to {json.dumps(default)}"
    assert secure >= 1


_SECRETISH_NAME = re.compile(r"secret|password|connectionstring|accountkey|accesskey|instrumentationkey|token", re.I)
_SECRETISH_VALUE = re.compile(r"\blist[A-Z]\w*|listKeys|getSecret|ConnectionString|InstrumentationKey|AccountKey", re.I)


def test_no_output_carries_a_secret(parsed: dict[str, Any]) -> None:
    for path in BICEP_FILES:
        template = _template(parsed, path)
        secure_params = {n for n, p in template.get("parameters", {}).items() if _is_secure(p)}
        for name, output in template.get("outputs", {}).items():
            where = f"{path.name}: output {name}"
            assert not _SECRETISH_NAME.search(name), where
            assert not any(d["type"] == "secure" for d in output.get("decorators", [])), where
            value = json.dumps(output["value"])
            assert not _SECRETISH_VALUE.search(value), f"{where} = {value}"
            assert not any(re.search(rf'"{re.escape(p)}"|\${{{re.escape(p)}}}', value) for p in secure_params), where


def test_no_app_setting_holds_a_key(parsed: dict[str, Any]) -> None:
    for name, value in _app_settings(parsed).items():
        text = json.dumps(value)
        assert not re.search(r"listKeys|AccountKey=|SharedAccessSignature|getSecret", text), name


def test_function_app_carries_the_azd_service_tag(parsed: dict[str, Any]) -> None:
    module = _main_module_for(parsed, "functionapp.bicep")
    tags = {_unquote(k): v for k, v in module["params"]["appTags"].items()}
    assert tags.get("azd-service-name") == _azure_yaml_service()[0]
    site = _one(parsed, "Microsoft.Web/sites")
    assert '"appTags"' in json.dumps(site["tags"]), "the function app must carry appTags"


# ---------------------------------------------------------------------------------------
# 4. The signing key: a Key Vault secret that MCP_GATEWAY_SIGNING_KEY refers to

SECRET = "Microsoft.KeyVault/vaults/secrets"
SIGNING_KEY_SECRET = "mcp-gateway-signing-key"
# What azd's secretOrRandomPassword generates when the vault or the secret does not exist yet
# (5 lower-case letters, 5 upper-case, 5 digits), and what newGuid() returns.
AZD_GENERATED_CHARS = 15
GUID_CHARS = 36


def _signing_key_secret(parsed: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(symbolic name, body) of the signing key's secret, which lives beside the vault."""
    found = [(f, n, _body(r)) for f, n, r in _all_resources(parsed, SECRET) if _body(r)["name"] == SIGNING_KEY_SECRET]
    assert len(found) == 1, f"expected one {SECRET} named {SIGNING_KEY_SECRET}, found {[(f, n) for f, n, _ in found]}"
    (file, name, secret), = found
    assert file == KEY_VAULT_MODULE.name, f"the signing key is created in {file}, not beside the vault"
    return name, secret


def test_signing_key_is_a_secret_of_the_gateway_vault(parsed: dict[str, Any]) -> None:
    _, secret = _signing_key_secret(parsed)
    vaults = _resources(_template(parsed, KEY_VAULT_MODULE), "Microsoft.KeyVault/vaults")
    assert secret["parent"] in vaults, f"parent {secret['parent']} is not the vault this module creates"


def test_signing_key_comes_from_a_secure_parameter_and_is_never_too_short(parsed: dict[str, Any]) -> None:
    """A first `azd provision` passes the 15 characters azd generates; the gateway refuses fewer than
    MIN_KEY_CHARS, so the Bicep completes a short value with a GUID and keeps a long one as it is."""
    template = _template(parsed, KEY_VAULT_MODULE)
    _, secret = _signing_key_secret(parsed)
    condition, kept, completed = _conditional(secret["properties"]["value"])
    assert condition["operator"]["type"] == "greater_than_or_equals", condition
    length, threshold = condition["operator"]["operands"].values()
    assert _function(length) == "length" and threshold == MIN_KEY_CHARS, condition
    key = length["function"]["parameters"]["arg_1"]
    assert kept == key
    fill = re.fullmatch(rf"\$\{{{key}\}}\$\{{(\w+)\}}", completed)
    assert fill, f"a short {key} should be completed as '${{{key}}}${{<fill>}}', not {completed!r}"
    key_param, fill_param = _param(template, key), _param(template, fill.group(1))
    assert key_param is not None and _is_secure(key_param) and key_param["default"] is None
    assert fill_param is not None and _is_secure(fill_param) and _function(fill_param["default"]) == "new_guid"
    assert AZD_GENERATED_CHARS + GUID_CHARS >= MIN_KEY_CHARS

    passed = _main_module_for(parsed, KEY_VAULT_MODULE.name)["params"]
    assert fill.group(1) not in passed, "the fill is a new random value at each deployment, never passed in"
    main_param = _param(_template(parsed, MAIN), passed[key])
    # Nobody passing a value (the az CLI path without it) still gets a random key.
    assert main_param is not None and _is_secure(main_param) and _function(main_param["default"]) == "new_guid"


def test_signing_key_setting_is_a_key_vault_reference_to_the_secret(parsed: dict[str, Any]) -> None:
    """The key is in no app setting and no template: the platform resolves the reference. No version,
    so the latest one is used and a rotated key is picked up."""
    value = _app_settings(parsed)["MCP_GATEWAY_SIGNING_KEY"]
    reference = re.fullmatch(r"@Microsoft\.KeyVault\(VaultName=\$\{(\w+)\};SecretName=\$\{(\w+)\}\)", value)
    assert reference, f"MCP_GATEWAY_SIGNING_KEY = {value!r}"
    vault_param, secret_param = reference.groups()
    app_template = _function_app_template(parsed)
    assert _param(app_template, vault_param) is not None and _param(app_template, secret_param) is not None
    wired = _main_module_for(parsed, "functionapp.bicep")["params"]
    assert _accessor_path(wired[vault_param]) == ["keyVault", "outputs", "name"]
    module, outputs, output = _accessor_path(wired[secret_param])
    assert (module, outputs) == ("keyVault", "outputs"), wired[secret_param]
    name, secret = _signing_key_secret(parsed)
    vault_outputs = _template(parsed, KEY_VAULT_MODULE)["outputs"]
    assert _accessor_path(vault_outputs[output]["value"]) == [name, "name"]
    assert _accessor_path(vault_outputs["name"]["value"]) == [secret["parent"], "name"]


def test_site_resolves_references_with_the_user_assigned_identity(parsed: dict[str, Any]) -> None:
    """Without keyVaultReferenceIdentity the platform uses a system-assigned identity, which the site does
    not have: the reference stays unresolved and the app sees the reference string itself."""
    site = _one(parsed, "Microsoft.Web/sites")
    identity = site["properties"]["keyVaultReferenceIdentity"]
    assert _param(_function_app_template(parsed), identity) is not None, identity
    assert site["identity"]["type"] == "UserAssigned"
    assert {_unquote(k) for k in site["identity"]["userAssignedIdentities"]} == {f"${{{identity}}}"}
    wired = _main_module_for(parsed, "functionapp.bicep")["params"]
    assert _accessor_path(wired[identity]) == ["identity", "outputs", "id"]


def test_reference_identity_can_read_the_signing_key(parsed: dict[str, Any]) -> None:
    """Key Vault Secrets User on the secret's vault, unconditionally, for the identity the site resolves
    references with. The function app module takes the vault module's outputs, so it waits for the grant."""
    template = _template(parsed, KEY_VAULT_MODULE)
    variables = {k: v["value"] for k, v in template.get("variables", {}).items()}
    secret_name, secret = _signing_key_secret(parsed)
    readers = []
    for res in _resources(template, ROLE_ASSIGNMENT).values():
        body = _body(res)
        role = body["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        if variables.get(role, role) == ROLE_IDS["Key Vault Secrets User"] and body["scope"] in (secret["parent"], secret_name):
            assert "condition" not in res["config"], "the reader's grant must not depend on a condition"
            readers.append(body["properties"]["principalId"])
    wired = _main_module_for(parsed, KEY_VAULT_MODULE.name)["params"]
    granted = [_accessor_path(wired[p]) for p in readers if p in wired]
    assert ["identity", "outputs", "principalId"] in granted, f"Key Vault Secrets User goes to {granted}"

    site = _one(parsed, "Microsoft.Web/sites")
    site_wired = _main_module_for(parsed, "functionapp.bicep")["params"]
    assert _accessor_path(site_wired[site["properties"]["keyVaultReferenceIdentity"]]) == ["identity", "outputs", "id"]
    identity_outputs = _template(parsed, IDENTITY_MODULE)["outputs"]
    resolver = _accessor_path(identity_outputs["id"]["value"])
    reader = _accessor_path(identity_outputs["principalId"]["value"])
    assert resolver[0] == reader[0], "the reader and the resolving identity are one resource"


# ---------------------------------------------------------------------------------------
# 5. Every setting the gateway reads is set by the Bicep or documented as optional


def test_every_bicep_sourced_setting_is_set(parsed: dict[str, Any]) -> None:
    app_settings = _app_settings(parsed)
    missing = sorted(s.name for s in SETTINGS if s.source == "bicep" and s.name not in app_settings)
    assert not missing, f"shared/settings.py says Bicep sets these, infra does not: {missing}"


def test_every_setting_the_bicep_sets_is_read(parsed: dict[str, Any]) -> None:
    platform = {s.name for s in SETTINGS if s.source == "platform"}
    for name in _app_settings(parsed):
        assert name not in FORBIDDEN_ON_FLEX, f"{name} must not be an app setting on Flex Consumption"
        assert name not in platform, f"{name} is set by the platform, not by us"
        assert name in SETTING_NAMES or name in HOST_SETTINGS, f"{name} is read by nobody (shared/settings.py)"


def test_optional_settings_are_documented() -> None:
    for setting in SETTINGS:
        assert setting.source in {"bicep", "platform", "optional"}
        assert setting.description.strip(), setting.name


def test_settings_wire_the_identity_storage_and_telemetry(parsed: dict[str, Any]) -> None:
    app = _app_settings(parsed)
    assert app["PYTHON_ENABLE_INIT_INDEXING"] == "1"
    assert app["AzureWebJobsStorage__credential"] == "managedidentity"
    assert "AzureWebJobsStorage" not in app  # a connection string would need a key
    client_id = app["AZURE_CLIENT_ID"]
    assert isinstance(client_id, str) and _param(_function_app_template(parsed), client_id) is not None
    assert app["AzureWebJobsStorage__clientId"] == client_id
    assert app["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == f"Authorization=AAD;ClientId=${{{client_id}}}"
    main_params = _main_module_for(parsed, "functionapp.bicep")["params"]
    wired = json.dumps(main_params[client_id])  # identity.outputs.clientId
    assert '"identity"' in wired and '"clientId"' in wired, wired


def test_host_storage_is_reached_through_the_accounts_own_endpoints(parsed: dict[str, Any]) -> None:
    """A service URI from primaryEndpoints works in sovereign clouds, where accountName's default suffix does not."""
    app = _app_settings(parsed)
    assert "AzureWebJobsStorage__accountName" not in app
    blob_uri = app["AzureWebJobsStorage__blobServiceUri"]
    assert _param(_function_app_template(parsed), blob_uri) is not None
    wired = json.dumps(_main_module_for(parsed, "functionapp.bicep")["params"][blob_uri])
    assert '"storage"' in wired and '"blobEndpoint"' in wired, wired
    storage_outputs = _template(parsed, INFRA / "modules" / "storage.bicep")["outputs"]
    assert _accessor_path(storage_outputs["blobEndpoint"]["value"]) == ["storage", "properties", "primaryEndpoints", "blob"]


def _setting_names_read_in_code() -> set[str]:
    names: set[str] = set()
    sources = [ROOT / "function_app.py", *sorted((ROOT / "shared").rglob("*.py"))]
    read = re.compile(r"""(?:\benv|os\.getenv|environ\.get|environ\[)\(?\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""")
    for path in sources:
        if path.exists() and path.name != "settings.py":
            names.update(read.findall(path.read_text(encoding="utf-8")))
    return names


def test_code_reads_only_listed_settings() -> None:
    unlisted = sorted(_setting_names_read_in_code() - SETTING_NAMES)
    assert not unlisted, f"read in code but missing from shared/settings.py: {unlisted}"


# ---------------------------------------------------------------------------------------
# 6. local.settings.sample.json, azure.yaml, the parameters file and the READMEs agree


@lru_cache(maxsize=None)
def _azure_yaml_service() -> tuple[str, tuple[tuple[str, str], ...]]:
    services = load_yaml(AZURE_YAML)["services"]
    assert len(services) == 1, services
    (name, service), = services.items()
    return name, tuple(sorted(service.items()))


def test_azure_yaml_deploys_the_gateway_with_this_infra() -> None:
    doc = load_yaml(AZURE_YAML)
    name, service = _azure_yaml_service()
    assert name == "gateway"
    assert dict(service) == {"project": ".", "language": "python", "host": "function"}
    infra = doc.get("infra", {})
    assert infra.get("provider", "bicep") == "bicep"
    assert (ROOT / infra.get("path", "infra") / f"{infra.get('module', 'main')}.bicep") == MAIN
    assert (ROOT / infra.get("path", "infra") / f"{infra.get('module', 'main')}.parameters.json") == PARAMETERS_FILE


def test_local_settings_sample_lists_every_setting() -> None:
    values = json.loads(LOCAL_SETTINGS_SAMPLE.read_text(encoding="utf-8"))["Values"]
    missing = sorted(s.name for s in SETTINGS if s.source != "platform" and s.name not in values)
    assert not missing, f"local.settings.sample.json lacks {missing}"
    unknown = sorted(set(values) - SETTING_NAMES - HOST_SETTINGS - LOCAL_HOST_SETTINGS)
    assert not unknown, f"local.settings.sample.json sets settings nobody reads: {unknown}"
    assert values.get("PYTHON_ENABLE_INIT_INDEXING") == "1"


def test_parameters_file_names_only_real_parameters(parsed: dict[str, Any]) -> None:
    main_params = _template(parsed, MAIN)["parameters"]
    given = json.loads(PARAMETERS_FILE.read_text(encoding="utf-8"))["parameters"]
    assert set(given) <= set(main_params), sorted(set(given) - set(main_params))
    required = {n for n, p in main_params.items() if p["default"] is None}
    assert required <= set(given), sorted(required - set(given))


def test_parameters_file_maps_setting_variables_to_their_settings(parsed: dict[str, Any]) -> None:
    """`${MCP_GATEWAY_CONFIG}` in the parameters file must end up in the MCP_GATEWAY_CONFIG setting."""
    given = json.loads(PARAMETERS_FILE.read_text(encoding="utf-8"))["parameters"]
    module_params = _main_module_for(parsed, "functionapp.bicep")["params"]
    app = _app_settings(parsed)
    checked = 0
    for param, entry in given.items():
        for variable in re.findall(r"\$\{(\w+)", json.dumps(entry["value"])):
            if variable in SETTING_NAMES:
                module_param = [k for k, v in module_params.items() if v == param]
                assert module_param and app.get(variable) == module_param[0], f"{param} <- ${{{variable}}}"
                checked += 1
    assert checked >= 1


def test_parameters_file_defaults_match_the_bicep(parsed: dict[str, Any]) -> None:
    """`${VAR=default}` repeats a Bicep default for azd: the two must not drift apart."""
    main_params = _template(parsed, MAIN)["parameters"]
    given = json.loads(PARAMETERS_FILE.read_text(encoding="utf-8"))["parameters"]
    checked = 0
    for name, entry in given.items():
        match = re.fullmatch(r"\$\{\w+=(.*)\}", entry["value"])
        if match:
            default = main_params[name]["default"]
            expected = json.dumps(default) if isinstance(default, bool) else str(default)
            assert match.group(1) == expected, f"{name}: parameters file says {match.group(1)}, main.bicep {expected}"
            checked += 1
    assert checked >= 5


# azd's command substitution in a parameters file: $(name args), args of word characters,
# blanks and dashes (azure-dev, pkg/cmdsubst).
_AZD_COMMAND = re.compile(r"\$\(\s*(\w+)([\w\s-]*)\)")


def test_parameters_file_keeps_the_signing_key_across_provisions(parsed: dict[str, Any]) -> None:
    """azd reads the key back from the vault at each provision, so the Bicep writes the same value again.
    Before the first one KEY_VAULT_NAME (an output) is unset: one argument, and azd generates a value."""
    main = _template(parsed, MAIN)
    _, secret = _signing_key_secret(parsed)
    _, key, _ = _conditional(secret["properties"]["value"])
    main_param = _main_module_for(parsed, KEY_VAULT_MODULE.name)["params"][key]
    given = json.loads(PARAMETERS_FILE.read_text(encoding="utf-8"))["parameters"]
    assert main_param in given, f"main.parameters.json does not give {main_param}: every provision would replace the key"
    value = given[main_param]["value"]
    assert value == f"$(secretOrRandomPassword ${{KEY_VAULT_NAME}} {SIGNING_KEY_SECRET})", value
    assert _accessor_path(main["outputs"]["KEY_VAULT_NAME"]["value"]) == ["keyVault", "outputs", "name"]
    for vault, arguments in [("kv-4ab3xe5yq2w7c", ["kv-4ab3xe5yq2w7c", SIGNING_KEY_SECRET]), ("", [SIGNING_KEY_SECRET])]:
        command = _AZD_COMMAND.fullmatch(value.replace("${KEY_VAULT_NAME}", vault))
        assert command and command.group(1) == "secretOrRandomPassword", value
        assert command.group(2).split() == arguments


def test_infra_readme_names_the_signing_key_secret_as_the_bicep_does() -> None:
    text = INFRA_README.read_text(encoding="utf-8")
    named = set(re.findall(r"(?<![\w#-])[\w-]*signing-key[\w-]*", text))  # not the #the-signing-key anchor
    assert named == {SIGNING_KEY_SECRET}, named
    assert "configreferences/appsettings/refresh" in text, "the rotation steps must make every instance reload the key"


def _deployment_readmes() -> list[Path]:
    readmes = [INFRA_README]
    if ROOT_README.exists() and re.search(r"az deployment group create|azd up", ROOT_README.read_text(encoding="utf-8")):
        readmes.append(ROOT_README)
    return readmes


def _deployment_commands(text: str) -> list[list[str]]:
    joined = re.sub(r"\\\n\s*", " ", text)
    return [shlex.split(line.strip()) for line in joined.splitlines() if line.strip().startswith("az deployment group create")]


def _outputs_named(text: str) -> set[str]:
    return set(
        re.findall(r"properties\.outputs\.([A-Za-z_]\w*)", text)
        + re.findall(r"\bout ([A-Z][A-Z0-9_]+)\b", text)
        + re.findall(r"azd env get-value ([A-Z][A-Z0-9_]+)", text)
    )


def test_infra_readme_walks_through_the_deployment() -> None:
    text = INFRA_README.read_text(encoding="utf-8")
    for step in [
        "az group create",
        "az deployment group create",
        "-f infra/main.bicep",
        "az keyvault secret set",
        "azd up",
        "/healthz",
        "/mcp/",
        "Ocp-Apim-Subscription-Key",
        '"method":"initialize"',
    ]:
        assert step in text, f"infra/README.md does not show {step!r}"
    assert "func azure functionapp publish" in text or "config-zip" in text


def _in_order(text: str, steps: list[str]) -> None:
    position = 0
    for step in steps:
        found = text.find(step, position)
        assert found >= 0, f"infra/README.md: {step!r} missing, or not after the step before it"
        position = found + len(step)


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    following = text.find("\n## ", start + len(heading))
    return text[start : following if following >= 0 else len(text)]


def test_infra_readme_walks_from_azd_init_to_a_vs_code_tool_call() -> None:
    text = _section(INFRA_README.read_text(encoding="utf-8"), "## From a checkout to a VS Code tool call")
    _in_order(text, [
        "azd init",
        "infra/scripts/entra-app.sh",
        "cp gateway.azure.sample.json gateway.json",
        '"entra"',
        "azd up",
        "azd env get-value MCP_BASE_URL",
        ".vscode/mcp.json",
        "sign in",
        "tool",
    ])
    snippets = [json.loads(m) for m in re.findall(r"```json\n(.*?)```", text, re.S) if '"type": "http"' in m]
    assert snippets, "no VS Code mcp.json snippet"
    (server,) = snippets[-1]["servers"].values()
    assert server["type"] == "http" and "/mcp/" in server["url"]


def test_infra_readme_checks_the_config_before_every_az_cli_publish() -> None:
    text = _section(INFRA_README.read_text(encoding="utf-8"), "## The same with the az CLI")
    _in_order(text, ["az login", "infra/scripts/entra-app.sh", "cp gateway.azure.sample.json gateway.json",
                     "az deployment group create"])
    publishes = [line for line in text.splitlines() if "functionapp publish" in line or "config-zip" in line]
    assert publishes
    for line in publishes:
        command = text.index(line) + max(line.find("functionapp publish"), line.find("config-zip"))
        check = text.rfind("infra/scripts/check_config.py", 0, command)
        assert check >= 0 and "&&" in text[check:command], f"not gated by the config check: {line}"


def test_infra_readme_is_for_users() -> None:
    """No notes about the machines the tests run on: users deploy from their own."""
    text = INFRA_README.read_text(encoding="utf-8")
    assert not re.search(r"test machines?|machines that run the tests|(cannot|can.t|can) be installed|not installable", text, re.I)


@pytest.mark.parametrize("readme", _deployment_readmes(), ids=lambda p: str(p.relative_to(ROOT)))
def test_readme_deployment_steps_name_real_parameters_and_outputs(parsed: dict[str, Any], readme: Path) -> None:
    text = readme.read_text(encoding="utf-8")
    main = _template(parsed, MAIN)
    params, outputs = main["parameters"], main["outputs"]

    commands = _deployment_commands(text)
    if readme == INFRA_README:  # the root README may point there instead of repeating it
        assert commands, f"{readme.name}: no `az deployment group create` command"
    for argv in commands:
        files = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-f", "--template-file")]
        assert files == ["infra/main.bicep"], argv
        named = set()
        for i, arg in enumerate(argv):
            if arg in ("-p", "--parameters"):
                for value in argv[i + 1 :]:
                    if value.startswith("-"):
                        break
                    if "=" in value:
                        named.add(value.split("=", 1)[0])
        assert named <= set(params), f"{readme.name}: unknown parameters {sorted(named - set(params))}"
        required = {n for n, p in params.items() if p["default"] is None}
        assert required <= named, f"{readme.name}: deployment lacks {sorted(required - named)}"

    referenced = _outputs_named(text)
    assert referenced <= set(outputs), f"{readme.name}: unknown outputs {sorted(referenced - set(outputs))}"
    if readme == INFRA_README:
        assert set(outputs) <= referenced | set(re.findall(r"`([A-Z][A-Z0-9_]+)`", text)), "an output is undocumented"


def test_infra_readme_names_every_setting_and_parameter(parsed: dict[str, Any]) -> None:
    text = INFRA_README.read_text(encoding="utf-8")
    for setting in SETTINGS:
        if setting.source == "bicep":
            assert setting.name in text, setting.name
    for param in _template(parsed, MAIN)["parameters"]:
        assert f"`{param}`" in text, f"parameter {param} is not documented in infra/README.md"
    given = json.loads(PARAMETERS_FILE.read_text(encoding="utf-8"))["parameters"]
    for entry in given.values():
        for variable in re.findall(r"\$\{(\w+)", json.dumps(entry["value"])):
            assert variable in text, f"azd variable {variable} is not documented in infra/README.md"


def test_outputs_are_the_documented_contract(parsed: dict[str, Any]) -> None:
    outputs = _template(parsed, MAIN)["outputs"]
    assert {"GATEWAY_URL", "IDENTITY_CLIENT_ID", "KEY_VAULT_URI"} <= set(outputs)
    assert outputs["GATEWAY_URL"]["value"].startswith("https://")


def test_outputs_name_what_an_mcp_client_and_the_config_need(parsed: dict[str, Any]) -> None:
    outputs = _template(parsed, MAIN)["outputs"]
    base = outputs["GATEWAY_URL"]["value"]
    assert outputs["MCP_BASE_URL"]["value"] == base + "/mcp"
    assert outputs["PROTECTED_RESOURCE_METADATA_URL"]["value"] == base + "/.well-known/oauth-protected-resource/mcp"
    # Not AZURE_TENANT_ID: azd exports outputs to its environment, where azure-identity would read it.
    tenant = outputs["ENTRA_TENANT_ID"]["value"]
    assert _function(tenant) == "tenant" and "tenantId" in json.dumps(tenant), tenant
    assert not any(name.startswith("AZURE_") for name in outputs)


# ---------------------------------------------------------------------------------------
# 7. host.json lets streams live as long as the gateway keeps them open


def _timespan_seconds(value: str) -> float | None:
    """A host.json timespan ([d.]hh:mm:ss) in seconds; None for "-1" (unbounded)."""
    if value == "-1":
        return None
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)", value)
    assert match, f"host.json functionTimeout {value!r} is not a timespan"
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def test_host_timeout_outlasts_the_idle_stream_default() -> None:
    """A host timeout ends the execution and restarts the worker, taking every stream on the instance."""
    host = json.loads(HOST_JSON.read_text(encoding="utf-8"))
    # Flex Consumption's default when the property is absent is 30 minutes.
    limit = _timespan_seconds(host.get("functionTimeout", "00:30:00"))
    assert limit is None or limit > Timeouts().idle_stream, (
        f"functionTimeout ({limit} s) ends SSE streams before timeouts.idleStream ({Timeouts().idle_stream} s)"
    )


def test_host_timeout_is_unbounded() -> None:
    """A stream that keeps sending events is never idle: only an unbounded timeout leaves it to the gateway."""
    host = json.loads(HOST_JSON.read_text(encoding="utf-8"))
    assert host.get("functionTimeout") == "-1"
