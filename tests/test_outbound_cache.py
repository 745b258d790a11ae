"""Token caching through the gateway: single flight under a burst, refresh ahead of expiry."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from backends.recorder import RecordingBackend
from emulators.fixtures import *  # noqa: F403 - fixtures
from helpers import gateway_config
from outbound_support import JSON_HEADERS, PING, CheckedBackend, bearer_token, run_gateway  # noqa: F401 - fixture

BACKEND = "api://backend"
GATEWAY_AUDIENCE = "api://mcp-gateway"


@pytest.fixture
def cloud(entra, managed_identity_env, key_vault, emulator_pki):
    return entra, managed_identity_env, key_vault, emulator_pki


def checked_recorder(entra, audiences: list[str]) -> CheckedBackend:
    def check(headers):
        return entra.validate(bearer_token(headers), audiences=audiences)

    return CheckedBackend(RecordingBackend(), check)


async def test_a_burst_makes_one_token_request_per_mode_scope_and_user(start_server, run_gateway, cloud):
    entra, mi, key_vault, pki = cloud
    app = entra.register_app(secret="app-secret", identifier_uris=[GATEWAY_AUDIENCE])
    key_vault.set_secret("app-secret", "app-secret")
    backend = checked_recorder(entra, [BACKEND, "api://other"])
    url = f"{start_server(backend, lifespan='off').base_url}/mcp"
    app_settings = {"tenantId": entra.tenant_id, "clientId": app.client_id, "authorityHost": entra.authority_host,
                    "clientSecret": {"keyVaultSecret": {"name": "app-secret"}}}
    entra_auth = {"entra": {"tenantId": entra.tenant_id, "audiences": [GATEWAY_AUDIENCE],
                            "authorityHost": entra.authority_host}}
    base, _ = run_gateway(gateway_config({
        "mi": {"url": url, "anonymous": True, "outbound": {"managedIdentity": {"scope": f"{BACKEND}/.default"}}},
        "mi-same-scope": {"url": url, "anonymous": True,
                          "outbound": {"managedIdentity": {"scope": f"{BACKEND}/.default"}}},
        "mi-other-scope": {"url": url, "anonymous": True,
                           "outbound": {"managedIdentity": {"scope": "api://other/.default"}}},
        "cc": {"url": url, "anonymous": True,
               "outbound": {"clientCredentials": {**app_settings, "scope": f"{BACKEND}/.default"}}},
        "obo": {"url": url, "auth": entra_auth, "outbound": {"onBehalfOf": {**app_settings, "scope": f"{BACKEND}/.default"}}},
    }, caBundle=pki.ca_path, keyVaultUrl=key_vault.vault_url))
    users = {oid: entra.mint({"aud": GATEWAY_AUDIENCE, "oid": oid}) for oid in ("alice", "bob")}
    plan = ["mi", "mi-same-scope", "mi-other-scope", "cc", "obo:alice", "obo:bob"]

    async def one(client: httpx.AsyncClient, target: str) -> int:
        server, _, user = target.partition(":")
        headers = {**JSON_HEADERS, **({"authorization": f"Bearer {users[user]}"} if user else {})}
        return (await client.post(f"{base}/mcp/{server}", content=PING, headers=headers)).status_code

    burst = [plan[i % len(plan)] for i in range(200)]  # 200 at once, over six cache keys
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as client:
        statuses = await asyncio.gather(*(one(client, target) for target in burst))
    assert statuses == [200] * 200
    assert not backend.rejected and len(backend.accepted) == 200
    assert mi.token_request_count(resource=BACKEND) == 1  # shared by both servers with that scope
    assert mi.token_request_count(resource="api://other") == 1
    assert entra.token_request_count(grant="client_credentials") == 1
    assert entra.token_request_count(grant="on_behalf_of", user="alice") == 1
    assert entra.token_request_count(grant="on_behalf_of", user="bob") == 1
    assert key_vault.get_count("app-secret") == 1  # the start-up check's read, then the cache


async def test_a_token_near_expiry_is_refreshed_before_it_lapses(start_server, run_gateway, cloud):
    entra, _, key_vault, pki = cloud
    app = entra.register_app(secret="app-secret")
    key_vault.set_secret("app-secret", "app-secret")
    backend = checked_recorder(entra, [BACKEND])
    url = f"{start_server(backend, lifespan='off').base_url}/mcp"
    outbound = {"clientCredentials": {"tenantId": entra.tenant_id, "clientId": app.client_id, "scope": f"{BACKEND}/.default",
                                      "authorityHost": entra.authority_host,
                                      "clientSecret": {"keyVaultSecret": {"name": "app-secret"}}}}
    base, gateway = run_gateway(gateway_config({"api": {"url": url, "anonymous": True, "outbound": outbound}},
                                               caBundle=pki.ca_path, keyVaultUrl=key_vault.vault_url))
    now = [time.time()]
    gateway.outbound.tokens.clock = lambda: now[0]

    async with httpx.AsyncClient(timeout=10) as client:
        async def call() -> httpx.Response:
            return await client.post(f"{base}/mcp/api", content=PING, headers=JSON_HEADERS)

        assert (await call()).status_code == 200
        first = backend.accepted[-1]
        now[0] = first["exp"] - 200  # inside the refresh window, 200 s before it lapses
        assert (await call()).status_code == 200
        second = backend.accepted[-1]
        assert second["uti"] != first["uti"]  # a new token, fetched before the first one lapsed
        assert entra.token_request_count(grant="client_credentials") == 2
        assert (await call()).status_code == 200  # the fresh token is cached again
        assert backend.accepted[-1]["uti"] == second["uti"]
        assert entra.token_request_count(grant="client_credentials") == 2

        # The endpoint failing during the refresh window: the current token is still used...
        now[0] = second["exp"] - 100
        entra.faults.fail_next(3, status=500, path_prefix=entra.token_path_prefix)
        assert (await call()).status_code == 200
        assert backend.accepted[-1]["uti"] == second["uti"]
        # ...but never once it is about to lapse.
        now[0] = second["exp"] - 10
        entra.faults.fail_next(3, status=500, path_prefix=entra.token_path_prefix)
        failed = await call()
        assert failed.status_code == 503, failed.text
        assert len(backend.accepted) == 4
