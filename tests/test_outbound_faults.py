"""Failing identity endpoints, token endpoints and Key Vault: bounded retries, then a clean 502/503
naming the server (the step is logged, never put in the body); missing secrets stop start-up;
no secret or token in logs or bodies."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from backends.recorder import RecordingBackend
from emulators.fixtures import *  # noqa: F403 - fixtures
from helpers import gateway_config
from outbound_support import (  # noqa: F401 - fixtures
    JSON_HEADERS,
    PING,
    CheckedBackend,
    all_logs,
    bearer_token,
    run_gateway,
)
from shared.app import create_app
from shared.config import parse_config
from shared.errors import ConfigError
from shared.outbound import check_secrets

BACKEND = "api://backend"
ATTEMPTS = 3


@pytest.fixture
def cloud(entra, managed_identity_env, key_vault, emulator_pki):
    return entra, managed_identity_env, key_vault, emulator_pki


@pytest.fixture
def gateway_for(start_server, run_gateway, cloud, caplog):
    caplog.set_level("DEBUG", logger="shared.outbound")
    _, _, key_vault, pki = cloud
    recorder = RecordingBackend()
    url = f"{start_server(recorder, lifespan='off').base_url}/mcp"

    def start(outbound: dict) -> str:
        base, start.last = run_gateway(gateway_config({"api": {"url": url, "anonymous": True, "outbound": outbound}},
                                                      caBundle=pki.ca_path, keyVaultUrl=key_vault.vault_url))
        return f"{base}/mcp/api"

    return start


async def call(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url, content=PING, headers=JSON_HEADERS)


def client_credentials(entra, client_id: str, secret_name: str = "app-secret") -> dict:
    return {"clientCredentials": {"tenantId": entra.tenant_id, "clientId": client_id, "scope": f"{BACKEND}/.default",
                                  "authorityHost": entra.authority_host,
                                  "clientSecret": {"keyVaultSecret": {"name": secret_name}}}}


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert body["jsonrpc"] == "2.0" and body["id"] == 7
    return body["error"]


GENERIC = {
    502: "server 'api': the gateway could not obtain the backend credential",
    503: "server 'api': the backend credential is unavailable for now: try again later",
}


def step_of(response: httpx.Response, caplog) -> str:
    """The failed step as logged (DEBUG), after checking the body names only the server."""
    assert error_of(response)["message"] == GENERIC[response.status_code]
    warnings = [r.getMessage() for r in caplog.records if r.name == "shared.outbound" and r.levelname == "WARNING"]
    assert f"server 'api': the backend credential could not be obtained ({response.status_code})" in warnings
    details = [r.getMessage() for r in caplog.records if r.name == "shared.outbound" and r.levelname == "DEBUG"]
    assert details, "the failed step was not logged"
    return details[-1]


# -- the managed identity endpoint ------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 429])
async def test_identity_endpoint_failing_is_retried_then_a_503(gateway_for, cloud, status, caplog):
    _, mi, _, _ = cloud
    url = gateway_for({"managedIdentity": {"scope": f"{BACKEND}/.default"}})
    mi.faults.fail_next(ATTEMPTS - 1, status=status, retry_after=0 if status == 429 else None)
    assert (await call(url)).status_code == 200  # the last attempt succeeds
    assert mi.requests.count(path="/msi/token") == ATTEMPTS

    mi.faults.fail_next(10, status=status, retry_after=0 if status == 429 else None)
    other = gateway_for({"managedIdentity": {"scope": "api://other/.default"}})
    failed = await call(other)
    mi.faults.clear()
    assert failed.status_code == 503
    assert mi.requests.count(path="/msi/token") == 2 * ATTEMPTS
    message = step_of(failed, caplog)
    assert message.startswith("server 'api': managed identity token for api://other/.default: managed identity endpoint")
    assert f"gave up after {ATTEMPTS} attempts" in message


async def test_identity_endpoint_down_is_a_503_and_recovers_without_restart(gateway_for, cloud, caplog):
    _, mi, _, _ = cloud
    url = gateway_for({"managedIdentity": {"scope": f"{BACKEND}/.default"}})
    mi.stop()
    try:
        failed = await call(url)
    finally:
        mi.start()
    assert failed.status_code == 503
    assert "managed identity endpoint unreachable" in step_of(failed, caplog)
    assert (await call(url)).status_code == 200


async def test_an_unknown_user_assigned_identity_is_a_502_without_retries(gateway_for, cloud, caplog):
    _, mi, _, _ = cloud
    url = gateway_for({"managedIdentity": {"scope": f"{BACKEND}/.default", "clientId": "not-assigned-to-this-app"}})
    failed = await call(url)
    assert failed.status_code == 502, failed.text
    assert mi.requests.count(path="/msi/token") == 1
    assert step_of(failed, caplog).startswith("server 'api': managed identity token for api://backend/.default:")


# -- the Entra token endpoint -------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 429])
async def test_token_endpoint_failing_is_retried_then_a_503(gateway_for, cloud, status, caplog):
    entra, _, key_vault, _ = cloud
    app = entra.register_app(secret="the-app-secret")
    key_vault.set_secret("app-secret", "the-app-secret")
    url = gateway_for(client_credentials(entra, app.client_id))
    token_path = f"/{entra.tenant_id}/oauth2/v2.0/token"
    retry_after = 0 if status == 429 else None
    entra.faults.fail_next(ATTEMPTS - 1, status=status, retry_after=retry_after, path_prefix=entra.token_path_prefix)
    assert (await call(url)).status_code == 200
    assert entra.requests.count(path=token_path) == ATTEMPTS  # msal's replay of errors did not swallow a retry

    entra.faults.fail_next(10, status=status, retry_after=retry_after, path_prefix=entra.token_path_prefix)
    other = gateway_for({"clientCredentials": {**client_credentials(entra, app.client_id)["clientCredentials"],
                                               "scope": "api://other/.default"}})
    failed = await call(other)
    entra.faults.clear()
    assert failed.status_code == 503
    assert entra.requests.count(path=token_path) == 2 * ATTEMPTS
    message = step_of(failed, caplog)
    assert message.startswith(f"server 'api': token for api://other/.default from {entra.authority} (client credentials):")
    assert f"gave up after {ATTEMPTS} attempts" in message


async def test_token_endpoint_down_is_a_503(gateway_for, cloud, caplog):
    entra, _, key_vault, _ = cloud
    app = entra.register_app(secret="the-app-secret")
    key_vault.set_secret("app-secret", "the-app-secret")
    url = gateway_for(client_credentials(entra, app.client_id))
    entra.stop()
    try:
        failed = await call(url)
    finally:
        entra.start()
    assert failed.status_code == 503
    assert "unreachable" in step_of(failed, caplog)
    assert (await call(url)).status_code == 200


async def test_a_refused_client_secret_is_a_502_without_retries(gateway_for, cloud, caplog):
    entra, _, key_vault, _ = cloud
    app = entra.register_app(secret="the-real-secret")
    key_vault.set_secret("app-secret", "a-stale-secret")
    failed = await call(gateway_for(client_credentials(entra, app.client_id)))
    assert failed.status_code == 502
    assert step_of(failed, caplog).endswith("token endpoint refused the request: invalid_client (AADSTS7000215)")
    assert entra.token_request_count(grant="client_credentials") == 1
    assert "a-stale-secret" not in failed.text


# -- Key Vault ------------------------------------------------------------------------------------


async def test_key_vault_failing_or_down_is_retried_then_a_503_naming_the_secret_only_in_the_log(gateway_for, cloud, caplog):
    _, _, key_vault, _ = cloud
    key_vault.set_secret("api-key", "the-api-key-value")
    url = gateway_for({"secretHeader": {"name": "x-api-key", "keyVaultSecret": {"name": "api-key"}}})
    secrets = gateway_for.last.secrets
    now = [secrets.clock()]
    secrets.clock = lambda: now[0]
    key_vault.stop()
    try:
        assert (await call(url)).status_code == 200  # read at start-up, cached: Key Vault not needed
    finally:
        key_vault.start()

    now[0] += secrets.ttl + 1  # the cached value is due to be read again
    key_vault.faults.fail_next(ATTEMPTS - 1, status=429, retry_after=0, path_prefix="/secrets/api-key")
    key_vault.reset_counters()
    assert (await call(url)).status_code == 200
    assert key_vault.requests.count(path="/secrets/api-key/") == ATTEMPTS

    now[0] += secrets.ttl + 1
    key_vault.faults.fail_next(10, status=500, path_prefix="/secrets/api-key")
    failed = await call(url)
    key_vault.faults.clear()
    assert failed.status_code == 503
    assert step_of(failed, caplog) == (
        f"server 'api': Key Vault secret 'api-key': Key Vault answered 500 (gave up after {ATTEMPTS} attempts)"
    )
    assert "api-key" not in failed.text and key_vault.vault_url not in failed.text
    key_vault.stop()
    try:
        down = await call(url)
    finally:
        key_vault.start()
    assert down.status_code == 503
    assert step_of(down, caplog).startswith("server 'api': Key Vault secret 'api-key': Key Vault unreachable")
    assert (await call(url)).status_code == 200  # back, without a restart
    assert "the-api-key-value" not in failed.text + down.text


async def test_a_missing_secret_stops_start_up_and_the_config_check_naming_it(cloud, monkeypatch):
    entra, _, key_vault, pki = cloud
    key_vault.set_secret("present", "v")
    document = gateway_config({
        "api": {"url": "http://127.0.0.1:9/mcp", "anonymous": True,
                "outbound": {"secretHeader": {"name": "x-api-key", "keyVaultSecret": {"name": "missing-api-key"}}}},
    }, caBundle=pki.ca_path, keyVaultUrl=key_vault.vault_url)
    config = parse_config(document)

    with pytest.raises(ConfigError, match="Key Vault secret 'missing-api-key': not found in https://127.0.0.1"):
        await check_secrets(config)

    # the ASGI lifespan: start-up fails with the secret's name
    app = create_app(config, environ={})
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: list[dict] = []
    await inbox.put({"type": "lifespan.startup"})

    async def send(message: dict) -> None:
        outbox.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    await app.aclose()
    assert outbox[-1]["type"] == "lifespan.startup.failed"
    assert "missing-api-key" in outbox[-1]["message"]


# -- no secret in logs or bodies ----------------------------------------------------------------


async def test_no_token_or_secret_value_reaches_logs_or_error_bodies(start_server, run_gateway, cloud, all_logs):
    entra, mi, key_vault, pki = cloud
    secrets = {"app-secret": "SECRET-client-secret-value", "api-key": "SECRET-api-key-value",
               "stale": "SECRET-stale-secret-value"}
    for name, value in secrets.items():
        key_vault.set_secret(name, value)
    app = entra.register_app(secret=secrets["app-secret"], identifier_uris=["api://mcp-gateway"])
    other_app = entra.register_app(secret="the-other-apps-real-secret")
    backend = CheckedBackend(RecordingBackend(), lambda headers: {"auth": headers.get("authorization", "")})
    url = f"{start_server(backend, lifespan='off').base_url}/mcp"
    settings = {"tenantId": entra.tenant_id, "clientId": app.client_id, "authorityHost": entra.authority_host}
    entra_auth = {"entra": {"tenantId": entra.tenant_id, "audiences": ["api://mcp-gateway"],
                            "authorityHost": entra.authority_host}}

    def server(outbound: dict, **extra) -> dict:
        return {"url": url, "outbound": outbound, **({"anonymous": True} if not extra else extra)}

    base, _ = run_gateway(gateway_config({
        "mi": server({"managedIdentity": {"scope": f"{BACKEND}/.default"}}),
        "cc": server({"clientCredentials": {**settings, "scope": f"{BACKEND}/.default",
                                            "clientSecret": {"keyVaultSecret": {"name": "app-secret"}}}}),
        "bad": server({"clientCredentials": {**settings, "clientId": other_app.client_id, "scope": f"{BACKEND}/.default",
                                             "clientSecret": {"keyVaultSecret": {"name": "stale"}}}}),
        "obo": server({"onBehalfOf": {**settings, "scope": f"{BACKEND}/.default",
                                      "clientSecret": {"keyVaultSecret": {"name": "app-secret"}}}}, auth=entra_auth),
        "key": server({"secretHeader": {"name": "x-api-key", "keyVaultSecret": {"name": "api-key"}}}),
        "pat": server({"secretHeader": {"name": "authorization", "prefix": "Bearer ",
                                        "keyVaultSecret": {"name": "api-key"}}}),
    }, caBundle=pki.ca_path, keyVaultUrl=key_vault.vault_url))
    user_token = entra.mint({"aud": "api://mcp-gateway", "oid": "carol"})
    bodies: list[str] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for name in ("mi", "cc", "bad", "obo", "key", "pat"):
            headers = {**JSON_HEADERS, "authorization": f"Bearer {user_token}"}
            bodies.append((await client.post(f"{base}/mcp/{name}", content=PING, headers=headers)).text)
        # failures too: every endpoint answering 500
        mi.faults.fail_next(10, status=500)
        entra.faults.fail_next(10, status=500, path_prefix=entra.token_path_prefix)
        failing = gateway_config({"m": server({"managedIdentity": {"scope": "api://x/.default"}})}, caBundle=pki.ca_path)
        failing_base, _ = run_gateway(failing)
        bodies.append((await client.post(f"{failing_base}/mcp/m", content=PING, headers=JSON_HEADERS)).text)
    mi.faults.clear()
    entra.faults.clear()

    sent = [seen["auth"].split(" ", 1)[-1] for seen in backend.accepted if seen["auth"]]
    assert len(sent) >= 4, bodies
    assert any('"status":503' in b for b in bodies) and any('"status":502' in b for b in bodies)
    logs = "\n".join(all_logs)
    assert "answered 500; retrying in" in logs  # the failures were logged...
    for value in [*secrets.values(), user_token, *sent]:
        fragment = value[-24:]  # ...but no value, nor a recognisable piece of one
        assert fragment not in logs, f"a secret or token appears in the logs: ...{fragment}"
        for body in bodies:
            assert fragment not in body
        assert fragment not in json.dumps(bodies)
