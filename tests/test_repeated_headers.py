"""A header that decides who the caller is, or where it is, counts only when sent once."""

from __future__ import annotations

import json

import pytest

from backends.recorder import RecordingBackend
from helpers import anonymous, gateway_config
from raw_http import RawClient
from shared.inbound.keys import key_digest
from test_inbound_tokens import AUDIENCE, CLIENT_APP, PING

KEY = "repeat-key-0123456789abcdef"
JSON_HEADERS = [(b"Content-Type", b"application/json"), (b"Accept", b"application/json, text/event-stream")]


@pytest.fixture
def gateway(start_server, start_gateway, entra, emulator_pki):
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    entra_auth = {"tenantId": entra.tenant_id, "audiences": [AUDIENCE], "authorityHost": entra.authority_host}
    servers = {
        "forwarding": {"url": f"{backend.base_url}/mcp", "auth": {"entra": entra_auth},
                       "outbound": {"forwardAuthorization": True}},
        "keyed": {"url": f"{backend.base_url}/mcp", "auth": {"subscriptionKey": {"headerName": "X-Api-Key"}}},
        "open": anonymous(f"{backend.base_url}/mcp"),
    }
    base = start_gateway({"servers": servers, "gateway": {"caBundle": emulator_pki.ca_path},
                          "subscriptions": {"a": {"servers": ["*"], "primaryKey": {"sha256": key_digest(KEY)}}}})
    with RawClient(base) as client:
        yield client, base.split("//")[1].encode(), recorder


def post(client: RawClient, path: bytes, host: bytes, headers: list[tuple[bytes, bytes]]):
    return client.request(b"POST", path, [(b"Host", host), *JSON_HEADERS, *headers], PING)


async def test_an_unvalidated_second_authorization_never_reaches_a_forwarding_backend(gateway, entra):
    client, host, recorder = gateway
    token = entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP})
    for order in ([b"Bearer unvalidated-attacker-token", b"Bearer " + token.encode()],
                  [b"Bearer " + token.encode(), b"Bearer unvalidated-attacker-token"]):
        response = post(client, b"/mcp/forwarding", host, [(b"Authorization", order[0]), (b"authorization", order[1])])
        assert response.status == 400, response.body
        assert json.loads(response.body)["error"]["code"] == "bad_request"
    assert recorder.requests == []
    # one copy is fine, and is what the backend sees
    response = post(client, b"/mcp/forwarding", host, [(b"Authorization", b"Bearer " + token.encode())])
    assert response.status == 200
    assert recorder.requests[-1].headers["authorization"] == f"Bearer {token}"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (b"/mcp/open", [(b"Origin", b"http://localhost"), (b"Origin", b"http://evil.example")]),
        (b"/mcp/keyed", [(b"X-Api-Key", KEY.encode()), (b"x-api-key", b"other")]),
        (b"/mcp/keyed", [(b"X-Api-Key", KEY.encode()), (b"X-API-KEY", KEY.encode())]),
        (b"/mcp/open", [(b"Ocp-Apim-Subscription-Key", b"a"), (b"Ocp-Apim-Subscription-Key", b"b")]),
        (b"/mcp/open", [(b"Authorization", b"Bearer a"), (b"Authorization", b"Bearer b")]),
    ],
)
async def test_a_repeated_host_origin_or_credential_header_is_a_400(gateway, path, headers):
    client, host, recorder = gateway
    response = post(client, path, host, headers)
    assert response.status == 400, response.body
    assert json.loads(response.body)["error"]["code"] == "bad_request"
    assert KEY.encode() not in response.body
    assert recorder.requests == []


async def test_repeated_ordinary_headers_still_pass(gateway):
    client, host, recorder = gateway
    response = post(client, b"/mcp/open", host, [(b"X-Trace", b"1"), (b"X-Trace", b"2"), (b"Accept-Language", b"en")])
    assert response.status == 200
    assert [v for k, v in recorder.requests[-1].raw_headers if k == b"x-trace"] == [b"1", b"2"]


async def test_a_second_host_is_refused_by_the_gateway_itself():
    """uvicorn already refuses two Host lines; the Functions host may not, so the gateway checks too."""
    from starlette.requests import Request

    from shared.app import create_app
    from shared.config import parse_config

    gateway = create_app(parse_config(gateway_config({"open": anonymous("http://127.0.0.1:9/mcp")})), environ={})
    scope = {"type": "http", "method": "GET", "path": "/healthz", "query_string": b"", "scheme": "http",
             "headers": [(b"host", b"evil.example"), (b"host", b"localhost")], "client": ("127.0.0.1", 1)}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    response = await gateway.handle(Request(scope, receive))
    assert response.status_code == 400
    await gateway.aclose()
