"""What an attacker (or anyone with the operator's log stream) learns from the logs.

Above DEBUG a log line names the server or subscription and what went wrong, never which
secret, which vault or which token endpoint (docs/security.md); at DEBUG those are named,
but never a secret value or a token. The dependencies fail the way they do in Azure:
a throttled Key Vault, a token endpoint answering 500, a refresh that fails while the
current token still has some life.
"""

from __future__ import annotations

import logging

import httpx
import pytest

from backends.recorder import RecordingBackend
from emulators.fixtures import *  # noqa: F403 - fixtures
from helpers import gateway_config
from outbound_support import JSON_HEADERS, PING, all_logs, run_gateway  # noqa: F401 - fixtures
from shared.inbound.keys import key_digest

SECRET_NAME = "contoso-backend-api-key"
SECRET_VALUE = "SECRET-VALUE-of-the-backend-api-key"
APP_SECRET_NAME = "contoso-gateway-app-secret"
APP_SECRET_VALUE = "SECRET-VALUE-of-the-app-registration"
BACKEND = "api://backend"


@pytest.fixture
def cloud(entra, managed_identity_env, key_vault, emulator_pki):
    return entra, key_vault, emulator_pki


@pytest.fixture
def operator_logging(all_logs):
    """Logging as both front doors set it up (shared.telemetry), at the level an operator picks;
    the root logger stays at DEBUG, as permissive as the Functions worker's, which passes
    INFO on to Application Insights."""
    from shared.telemetry import configure_logging

    names = ("shared", "shared.access", "azure", "azure.core.pipeline.policies.http_logging_policy")
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in names]
    root = logging.getLogger("shared")
    handlers, propagate = root.handlers[:], root.propagate

    def configure(level: str) -> list[str]:
        configure_logging({"MCP_GATEWAY_LOG_LEVEL": level, "MCP_GATEWAY_ACCESS_LOG": "1"})
        return all_logs

    yield configure
    root.handlers[:], root.propagate = handlers, propagate
    for logger, level in saved:
        logger.setLevel(level)


def assert_names_nothing(lines: list[str], *names: str) -> None:
    for line in lines:
        if " DEBUG " in line:
            continue
        for name in names:
            assert name not in line, f"{name!r} logged above DEBUG: {line}"


async def call(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url, content=PING, headers=JSON_HEADERS)


async def test_a_throttled_key_vault_read_names_no_secret_or_vault_above_debug(start_server, run_gateway, cloud,
                                                                                operator_logging):
    all_logs = operator_logging("INFO")
    _, key_vault, pki = cloud
    key_vault.set_secret(SECRET_NAME, SECRET_VALUE)
    url = f"{start_server(RecordingBackend(), lifespan='off').base_url}/mcp"
    base, gateway = run_gateway(gateway_config(
        {"api": {"url": url, "anonymous": True,
                 "outbound": {"secretHeader": {"name": "x-api-key", "keyVaultSecret": {"name": SECRET_NAME}}}}},
        caBundle=pki.ca_path, keyVaultUrl=key_vault.vault_url))
    secrets = gateway.secrets
    now = [secrets.clock()]
    secrets.clock = lambda: now[0]
    now[0] += secrets.ttl + 1  # the cached value is due to be read again
    key_vault.faults.fail_next(1, status=429, retry_after=0, path_prefix=f"/secrets/{SECRET_NAME}")
    assert (await call(f"{base}/mcp/api")).status_code == 200
    now[0] += secrets.ttl + 1
    key_vault.faults.fail_next(10, status=503, path_prefix=f"/secrets/{SECRET_NAME}")
    assert (await call(f"{base}/mcp/api")).status_code == 503
    key_vault.faults.clear()

    assert any("retrying" in line for line in all_logs), "the retries were not logged at all"
    assert any("server 'api': the backend credential could not be obtained (503)" in line for line in all_logs)
    assert_names_nothing(all_logs, SECRET_NAME, key_vault.vault_url.removeprefix("https://"))
    assert not any(SECRET_VALUE in line for line in all_logs)


async def test_a_failing_token_endpoint_and_refresh_name_no_endpoint_above_debug(start_server, run_gateway, cloud,
                                                                                 operator_logging):
    all_logs = operator_logging("INFO")
    entra, key_vault, pki = cloud
    app = entra.register_app(secret=APP_SECRET_VALUE)
    key_vault.set_secret(APP_SECRET_NAME, APP_SECRET_VALUE)
    url = f"{start_server(RecordingBackend(), lifespan='off').base_url}/mcp"
    outbound = {"clientCredentials": {"tenantId": entra.tenant_id, "clientId": app.client_id,
                                      "scope": f"{BACKEND}/.default", "authorityHost": entra.authority_host,
                                      "clientSecret": {"keyVaultSecret": {"name": APP_SECRET_NAME}}}}
    base, gateway = run_gateway(gateway_config({"api": {"url": url, "anonymous": True, "outbound": outbound}},
                                               caBundle=pki.ca_path, keyVaultUrl=key_vault.vault_url))
    entra.faults.fail_next(1, status=500, path_prefix=entra.token_path_prefix)
    assert (await call(f"{base}/mcp/api")).status_code == 200  # after one retry

    tokens = gateway.outbound.tokens
    now = [tokens.clock()]
    tokens.clock = lambda: now[0]
    now[0] += entra.token_lifetime - 60  # due for refresh, still valid for a minute
    entra.faults.fail_next(10, status=500, path_prefix=entra.token_path_prefix)
    assert (await call(f"{base}/mcp/api")).status_code == 200  # the current token, while the refresh fails
    entra.faults.clear()

    assert any("retrying" in line for line in all_logs), "the retry was not logged"
    assert any("token refresh failed" in line for line in all_logs), "the failed refresh was not logged"
    assert_names_nothing(all_logs, entra.authority_host.removeprefix("https://"), APP_SECRET_NAME)
    assert not any(APP_SECRET_VALUE in line for line in all_logs)


async def test_debug_logs_of_a_refused_and_an_accepted_caller_hold_no_credential(
    start_server, run_gateway, cloud, operator_logging
):
    """MCP_GATEWAY_LOG_LEVEL=DEBUG as an operator would turn it on: every stage logs what it
    does, and the caller's token, key and the backend's credential appear in none of it."""
    all_logs = operator_logging("DEBUG")
    entra, key_vault, pki = cloud
    key = "SECRET-caller-subscription-key-0123456789"
    key_vault.set_secret(SECRET_NAME, SECRET_VALUE)
    url = f"{start_server(RecordingBackend(), lifespan='off').base_url}/mcp"
    entra_auth = {"tenantId": entra.tenant_id, "audiences": ["api://mcp-gateway"], "authorityHost": entra.authority_host}
    base, _ = run_gateway({
        "servers": {
            "keyed": {"url": url, "auth": {"subscriptionKey": {}},
                      "outbound": {"secretHeader": {"name": "x-api-key", "keyVaultSecret": {"name": SECRET_NAME}}}},
            "entra": {"url": url, "auth": {"entra": entra_auth}},
        },
        "subscriptions": {"team": {"servers": ["keyed"], "primaryKey": {"sha256": key_digest(key)}}},
        "gateway": {"caBundle": pki.ca_path, "keyVaultUrl": key_vault.vault_url},
    })
    token = entra.mint({"aud": "api://mcp-gateway", "oid": "dana"})
    wrong_audience = entra.mint({"aud": "api://elsewhere", "oid": "dana"})
    statuses = []
    async with httpx.AsyncClient(timeout=30) as client:
        for path, headers, query in [
            ("keyed", {"ocp-apim-subscription-key": key}, ""),
            ("keyed", {}, f"?subscription-key={key}"),
            ("keyed", {"ocp-apim-subscription-key": key + "-wrong"}, ""),
            ("entra", {"authorization": f"Bearer {token}"}, ""),
            ("entra", {"authorization": f"Bearer {wrong_audience}"}, ""),
            ("entra", {"authorization": f"Bearer {token}"}, f"?x={token}"),
        ]:
            response = await client.post(f"{base}/mcp/{path}{query}", content=PING, headers={**JSON_HEADERS, **headers})
            statuses.append(response.status_code)
    assert statuses == [200, 200, 403, 200, 401, 200]
    assert len({line for line in all_logs if line.startswith("shared.access")}) == len(statuses)
    gateways = [line for line in all_logs if not (line.startswith("httpx ") and base in line)]  # not this test's client
    for value in (key, token, wrong_audience, SECRET_VALUE):
        fragment = value[-24:]
        leaked = [line for line in gateways if fragment in line]
        assert not leaked, f"...{fragment} appears in the logs: {leaked[0]}"
