"""Attacks with valid-looking tokens: right issuer and signature, used where they do not belong.

The forgeries (alg none, HS256 with the public key, embedded keys, kid tricks) are in
test_inbound_tokens.py; here the tokens are genuinely signed by the tenant, and the
question is whether the gateway keeps each one to what it was issued for.
"""

from __future__ import annotations

import time

import httpx
import pytest

from backends.recorder import RecordingBackend
from helpers import gateway_config

GATEWAY_API = "api://mcp-gateway"
OTHER_API = "api://reporting-api"
CLIENT_APP = "11111111-2222-3333-4444-555555555555"
PING = b'{"jsonrpc":"2.0","id":2,"method":"ping"}'
JSON = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def entra(emulator, audiences: list[str], **rules) -> dict:
    return {"entra": {"tenantId": emulator.tenant_id, "audiences": audiences, "authorityHost": emulator.authority_host,
                      **rules}}


@pytest.fixture
def world(start_server, start_gateway, entra_emulator, emulator_pki):
    recorder = RecordingBackend()
    url = f"{start_server(recorder, lifespan='off').base_url}/mcp"
    base = start_gateway(gateway_config({
        # one gateway app, a second API this gateway also accepts tokens for
        "scoped": {"url": url, "auth": entra(entra_emulator, [GATEWAY_API, OTHER_API],
                                             requiredScopes=[f"{GATEWAY_API}/mcp.access"])},
        "open-door": {"url": url, "auth": entra(entra_emulator, [GATEWAY_API])},
        "admins": {"url": url, "auth": entra(entra_emulator, [GATEWAY_API], requiredRoles=["MCP.Admin"])},
        "reports": {"url": url, "auth": entra(entra_emulator, [OTHER_API])},
        "custom-header": {"url": url, "auth": entra(entra_emulator, [GATEWAY_API], headerName="X-Access-Token")},
    }, caBundle=emulator_pki.ca_path))
    return base, recorder


@pytest.fixture
def entra_emulator(entra):
    return entra


async def call(base: str, server: str, token: str | None, header: str = "authorization", scheme: str = "Bearer ") -> int:
    headers = {**JSON, header: f"{scheme}{token}"} if token else JSON
    async with httpx.AsyncClient(timeout=10) as client:
        return (await client.post(f"{base}/mcp/{server}", content=PING, headers=headers)).status_code


@pytest.mark.xfail(strict=True, reason=(
    "design: a short scope name is matched against every audience of the server, not the token's own; "
    "v2 tokens carry the API's app id as aud, so tying api://custom-uri to it needs the app id in config"))
async def test_a_scope_of_another_accepted_api_does_not_stand_for_the_gateways(world, entra_emulator):
    """`scp` holds short names: `mcp.access` in a token for the reporting API is that API's
    scope, even though this server accepts that audience too."""
    base, recorder = world
    for_gateway = entra_emulator.mint({"aud": GATEWAY_API, "scp": "mcp.access"})
    for_reports = entra_emulator.mint({"aud": OTHER_API, "scp": "mcp.access"})
    assert await call(base, "scoped", for_gateway) == 200
    assert await call(base, "scoped", for_reports) == 403
    assert len(recorder.requests) == 1


async def test_a_token_for_one_api_opens_no_server_of_another(world, entra_emulator):
    base, recorder = world
    for_reports = entra_emulator.mint({"aud": OTHER_API})
    assert await call(base, "reports", for_reports) == 200
    assert await call(base, "open-door", for_reports) == 401
    assert await call(base, "open-door", entra_emulator.mint({"aud": [OTHER_API, "api://third"]})) == 401
    assert len(recorder.requests) == 1


async def test_a_token_cached_as_valid_on_one_server_is_still_checked_on_another(world, entra_emulator):
    base, recorder = world
    token = entra_emulator.mint({"aud": GATEWAY_API, "roles": ["MCP.Reader"]})
    assert await call(base, "open-door", token) == 200  # validated and cached there
    assert await call(base, "admins", token) == 403
    assert await call(base, "open-door", token) == 200
    assert len(recorder.requests) == 2


async def test_tokens_of_another_tenant_or_version_do_not_pass(world, entra_emulator):
    base, _ = world
    other_tenant = "99999999-8888-7777-6666-555555555555"
    cases = {
        "another tenant's issuer": {"iss": f"{entra_emulator.authority_host}/{other_tenant}/v2.0", "tid": other_tenant},
        "our issuer, another tenant id": {"tid": other_tenant},
        "v1 issuer, v2 shape": {"iss": entra_emulator.v1_issuer},
        "issued in the future": {"iat": int(time.time()) + 3600},
        "not yet valid": {"nbf": int(time.time()) + 3600},
        "expired within the hour": {"exp": int(time.time()) - 120},
        "no audience": {"aud": None},
    }
    for name, claims in cases.items():
        assert await call(base, "open-door", entra_emulator.mint({"aud": GATEWAY_API, **claims})) == 401, name


async def test_a_kid_with_a_trailing_line_end_is_an_unknown_key(world, entra_emulator):
    base, _ = world
    token = entra_emulator.mint({"aud": GATEWAY_API}, headers={"kid": entra_emulator.signing_key.kid + "\n"})
    assert await call(base, "open-door", token) == 401


async def test_a_custom_token_header_takes_a_bare_token_or_bearer_and_nothing_else(world, entra_emulator):
    base, _ = world
    token = entra_emulator.mint({"aud": GATEWAY_API})
    assert await call(base, "custom-header", token, header="x-access-token", scheme="") == 200
    assert await call(base, "custom-header", token, header="x-access-token", scheme="Bearer ") == 200
    assert await call(base, "custom-header", token, header="x-access-token", scheme="Basic ") == 401
    assert await call(base, "custom-header", token, header="authorization") == 401
