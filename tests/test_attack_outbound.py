"""Attacks on what the gateway sends a backend in the caller's name.

`forwardAuthorization` promises the backend the single copy of `Authorization` that the
gateway's own checks read: a backend behind it may rely on the token having been
validated. A caller must not be able to slip a token of its own making past that.
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from backends.recorder import RecordingBackend
from shared.inbound.keys import key_digest

AUDIENCE = "api://mcp-gateway"
KEY = "forwarding-attack-key-0123456789abcdef"
PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
JSON = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def _b64(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


FORGED = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'aud': AUDIENCE, 'oid': 'the-admin', 'roles': ['Admin']})}."


@pytest.fixture
def world(start_server, start_gateway, entra, emulator_pki):
    recorder = RecordingBackend()
    url = f"{start_server(recorder, lifespan='off').base_url}/mcp"
    entra_auth = {"tenantId": entra.tenant_id, "audiences": [AUDIENCE], "authorityHost": entra.authority_host}
    forward = {"forwardAuthorization": True}
    base = start_gateway({
        "servers": {
            "key-or-token": {"url": url, "outbound": forward,
                             "auth": {"mode": "any", "subscriptionKey": {}, "entra": entra_auth}},
            "custom-header": {"url": url, "outbound": forward,
                              "auth": {"entra": {**entra_auth, "headerName": "X-Access-Token"}}},
            "token": {"url": url, "outbound": forward, "auth": {"entra": entra_auth}},
        },
        "subscriptions": {"automation": {"servers": ["*"], "primaryKey": {"sha256": key_digest(KEY)}}},
        "gateway": {"caBundle": emulator_pki.ca_path},
    })
    return base, recorder


async def post(base: str, server: str, headers: dict) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(f"{base}/mcp/{server}", content=PING, headers={**JSON, **headers})


def forwarded(recorder: RecordingBackend) -> list[bytes]:
    return [v for k, v in recorder.requests[-1].raw_headers if k == b"authorization"]


async def test_a_caller_that_got_in_with_a_key_cannot_forward_a_token_of_its_own_making(world):
    base, recorder = world
    response = await post(base, "key-or-token", {"Ocp-Apim-Subscription-Key": KEY, "Authorization": f"Bearer {FORGED}"})
    assert response.status_code == 200
    assert FORGED.encode() not in b"".join(forwarded(recorder)), "an unvalidated token reached the backend"


async def test_a_token_checked_in_another_header_is_what_is_forwarded(world, entra):
    base, recorder = world
    token = entra.mint({"aud": AUDIENCE, "oid": "erin"})
    response = await post(base, "custom-header", {"X-Access-Token": token, "Authorization": f"Bearer {FORGED}"})
    assert response.status_code == 200
    assert forwarded(recorder) == [f"Bearer {token}".encode()]


async def test_a_validated_token_is_forwarded_as_it_was_checked(world, entra):
    base, recorder = world
    token = entra.mint({"aud": AUDIENCE, "oid": "frank"})
    assert (await post(base, "key-or-token", {"Authorization": f"Bearer {token}"})).status_code == 200
    assert forwarded(recorder) == [f"Bearer {token}".encode()]
    assert (await post(base, "token", {"Authorization": f"bearer   {token}"})).status_code == 200
    assert [v.split()[-1] for v in forwarded(recorder)] == [token.encode()]
    assert (await post(base, "token", {"Authorization": f"Bearer {FORGED}"})).status_code == 401
    assert len(recorder.requests) == 2
