"""What importing the gateway loads: only what its config uses (an MCP client's first
connect after a scale-out waits for every import).

Each case runs in a fresh interpreter and reads `sys.modules`: no timings, nothing that
depends on the machine's speed. bench/cold_start.py measures the times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

OPTIONAL_STACKS = (
    "azure.identity", "azure.keyvault", "azure.core", "azure.data", "aiohttp", "msal", "requests", "jwt", "cryptography",
    "mcp", "yaml", "shared.openapi", "shared.oauth", "shared.store", "shared.policy",
)
"""Libraries and gateway packages only some configs need: Key Vault and the managed identity,
msal, token validation, REST APIs as MCP servers (the MCP SDK), sign-in and its store."""
SERVERS = ("uvicorn", "fastapi")
"""The local server, and the Functions extension's framework: the gateway itself needs neither."""

BACKEND = "http://127.0.0.1:9/mcp"
DIGEST = "0" * 64
TENANT = "contoso.onmicrosoft.com"
APP = {"tenantId": TENANT, "clientId": "app-id", "scope": "api://backend/.default"}
ENTRA = {"entra": {"tenantId": TENANT, "audiences": ["api://gateway"]}}
VAULT_SECRET = {"keyVaultSecret": {"name": "backend-key", "vault": "https://kv.vault.azure.net"}}


def _loaded(names: Any) -> str:
    return f"[m for m in sys.modules if any(m == n or m.startswith(n + '.') for n in {tuple(names)!r})]"


def run_fresh(code: str, config: dict[str, Any] | None = None) -> Any:
    """Run `code` in a new interpreter (the gateway's config in MCP_GATEWAY_CONFIG); its last line is JSON."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHON_ENABLE_INIT_INDEXING": "1"}
    if config is not None:
        env["MCP_GATEWAY_CONFIG"] = json.dumps(config)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def one_server(entry: dict[str, Any], **document: Any) -> dict[str, Any]:
    return {"servers": {"api": {"url": BACKEND, **entry}}, **document}


ANONYMOUS = one_server({"anonymous": True})


def test_function_app_with_an_anonymous_config_loads_no_optional_stack():
    result = run_fresh(
        "import sys, json\n"
        "import function_app\n"
        "print(json.dumps({'ready': function_app.front_door.gateway is not None,"
        f" 'loaded': {_loaded(OPTIONAL_STACKS)}}}))",
        ANONYMOUS,
    )
    assert result["ready"], "the config was refused: the test would prove nothing"
    assert result["loaded"] == []


def test_the_gateway_itself_loads_neither_a_server_nor_fastapi():
    """uvicorn and FastAPI arrive with the Functions extension (function_app.py) or the
    local server (`python -m shared serve`), never with the gateway's own modules."""
    result = run_fresh(
        "import sys, json\n"
        "from shared.functions import FrontDoor\n"
        "door = FrontDoor.from_environment()\n"
        f"print(json.dumps({{'ready': door.gateway is not None, 'loaded': {_loaded(OPTIONAL_STACKS + SERVERS)}}}))",
        ANONYMOUS,
    )
    assert result["ready"]
    assert result["loaded"] == []


def test_subscription_keys_held_as_hashes_load_no_optional_stack():
    config = one_server(
        {"auth": {"subscriptionKey": {}}}, subscriptions={"team": {"servers": ["*"], "primaryKey": {"sha256": DIGEST}}}
    )
    result = run_fresh(f"import sys, json\nimport function_app\nprint(json.dumps({_loaded(OPTIONAL_STACKS)}))", config)
    assert result == []


BUILD_GATEWAY = """
import sys, json
from shared.app import create_app
from shared.config import load_config_from_env
gateway = create_app(load_config_from_env())
print(json.dumps({
    "modes": {name: type(mode).__name__ for name, mode in gateway.outbound.modes.items()},
    "validators": sorted(gateway.inbound._validators),
    "secret_store": gateway.secrets is not None,
    "modules": [m for m in sys.modules if m.startswith(("shared.", "azure.", "aiohttp", "msal", "jwt", "cryptography"))],
}))
"""

# Each feature: its config, the gateway modules and libraries it must load, those it must not.
FEATURES = {
    "forwardAuthorization": (
        one_server({"anonymous": True, "outbound": {"forwardAuthorization": True}}),
        ["shared.outbound.forward"],
        ["shared.secrets", "azure.core", "aiohttp", "msal", "jwt"],
    ),
    "managedIdentity": (
        one_server({"anonymous": True, "outbound": {"managedIdentity": {"scope": "api://backend/.default"}}}),
        ["shared.outbound.managed_identity", "shared.identity", "azure.identity.aio", "aiohttp"],
        ["shared.outbound.msal_apps", "shared.inbound.tokens", "jwt"],
    ),
    "secretHeader": (
        one_server({"anonymous": True, "outbound": {"secretHeader": {"name": "x-api-key", **VAULT_SECRET}}}),
        ["shared.outbound.secret_header", "shared.secrets", "azure.keyvault.secrets.aio"],
        ["shared.outbound.msal_apps", "shared.inbound.tokens", "jwt"],
    ),
    "clientCredentials": (
        one_server({"anonymous": True, "outbound": {"clientCredentials": {**APP, "clientSecret": VAULT_SECRET}}}),
        ["shared.outbound.client_credentials", "shared.outbound.msal_apps", "msal", "shared.secrets"],
        ["shared.outbound.on_behalf_of", "shared.inbound.tokens", "jwt"],
    ),
    "onBehalfOf": (
        one_server({"auth": ENTRA, "outbound": {"onBehalfOf": {**APP, "managedIdentityAssertion": {}}}}),
        ["shared.outbound.on_behalf_of", "shared.outbound.msal_apps", "msal", "shared.identity", "shared.inbound.tokens", "jwt"],
        ["shared.outbound.client_credentials"],
    ),
    "entra": (
        one_server({"auth": ENTRA}),
        ["shared.inbound.tokens", "shared.inbound.jwks", "jwt"],
        ["shared.secrets", "shared.outbound.msal_apps", "azure.core", "aiohttp", "msal"],
    ),
    "jwt": (
        one_server({"auth": {"jwt": {"openidConfigUrl": "https://idp.example/.well-known/openid-configuration",
                                     "audiences": ["api://gateway"]}}}),
        ["shared.inbound.tokens", "jwt"],
        ["shared.secrets", "azure.core", "aiohttp", "msal"],
    ),
    "subscription key in Key Vault": (
        one_server({"auth": {"subscriptionKey": {}}}, subscriptions={"team": {"servers": ["*"], "primaryKey": VAULT_SECRET}}),
        ["shared.secrets", "azure.keyvault.secrets.aio"],
        # azure-identity imports msal itself: only the gateway's msal code stays out
        ["shared.outbound.msal_apps", "shared.inbound.tokens", "jwt"],
    ),
}


@pytest.mark.parametrize("feature", FEATURES)
def test_a_feature_the_config_names_is_loaded_and_built(feature):
    config, needed, unneeded = FEATURES[feature]
    result = run_fresh(BUILD_GATEWAY, config)
    modules = set(result["modules"])
    assert [name for name in needed if name not in modules] == []
    assert [name for name in unneeded if name in modules or any(m.startswith(name + ".") for m in modules)] == []
    server = config["servers"]["api"]
    outbound = server.get("outbound")
    if outbound:
        mode = next(iter(outbound))
        assert result["modes"] == {"api": mode[0].upper() + mode[1:] + "Mode"}
    else:
        assert result["modes"] == {}
    takes_tokens = "entra" in server.get("auth", {}) or "jwt" in server.get("auth", {})
    assert result["validators"] == (["api"] if takes_tokens else [])
    assert result["secret_store"] == ("shared.secrets" in needed or "shared.identity" in needed)
