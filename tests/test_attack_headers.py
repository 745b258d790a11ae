"""Attacks with header names and values: spellings a backend reads as a name the gateway drops.

The backend here is the standard library's WSGI reference server: like every CGI-style
server it turns `X-Tenant` into `HTTP_X_TENANT`, and so does it to `X_Tenant`. A header the
gateway drops or replaces must not come back through that door.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest

from raw_http import RawClient

from shared.inbound.keys import key_digest

KEY = "header-attack-subscription-key-0123456789"
PING = b'{"jsonrpc":"2.0","id":3,"method":"ping"}'
JSON = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass


class WsgiBackend:
    """A WSGI app on wsgiref that records the CGI-style environ of every request."""

    def __init__(self) -> None:
        self.environs: list[dict[str, str]] = []
        self.server: WSGIServer = make_server("127.0.0.1", 0, self.app, handler_class=_QuietHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="wsgi-backend", daemon=True)

    def app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        environ["wsgi.input"].read(length)
        self.environs.append({k: v for k, v in environ.items() if k.startswith("HTTP_")})
        body = json.dumps({"jsonrpc": "2.0", "id": 3, "result": {}}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/mcp"

    def __enter__(self) -> "WsgiBackend":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def wsgi_backend() -> Iterator[WsgiBackend]:
    with WsgiBackend() as backend:
        yield backend


@pytest.fixture
def gateway(wsgi_backend, start_gateway) -> str:
    url = wsgi_backend.url
    return start_gateway({
        "servers": {
            "configured": {"url": url, "anonymous": True, "headers": {"X-Tenant": "contoso"}},
            "keyed": {"url": url, "auth": {"subscriptionKey": {"headerName": "X-Team-Key"}}},
        },
        "subscriptions": {"team": {"servers": ["*"], "primaryKey": {"sha256": key_digest(KEY)}}},
    })


async def _post(url: str, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(url, content=PING, headers={**JSON, **headers})


async def test_underscore_spellings_of_dropped_headers_never_reach_a_cgi_style_backend(gateway, wsgi_backend):
    host = gateway.removeprefix("http://")
    response = await _post(f"{gateway}/mcp/configured", {
        "X_Tenant": "evil-tenant",
        "X_MS_CLIENT_PRINCIPAL_NAME": "admin@contoso.com",
        "X_MS_TOKEN_AAD_ACCESS_TOKEN": "forged-easy-auth-token",
        "X_Forwarded_Host": "evil.example",
        "X_Forwarded_Proto": "https",
        "Proxy_Authorization": "Basic Zm9yZ2Vk",
        "Ocp_Apim_Subscription_Key": KEY,
    })
    assert response.status_code == 200
    [environ] = wsgi_backend.environs
    assert environ["HTTP_X_TENANT"] == "contoso", "the caller restated a configured header"
    assert "HTTP_X_MS_CLIENT_PRINCIPAL_NAME" not in environ, "a forged App Service identity reached the backend"
    assert "HTTP_X_MS_TOKEN_AAD_ACCESS_TOKEN" not in environ
    assert environ["HTTP_X_FORWARDED_HOST"] == host and environ["HTTP_X_FORWARDED_PROTO"] == "http"
    assert "HTTP_PROXY_AUTHORIZATION" not in environ and "HTTP_OCP_APIM_SUBSCRIPTION_KEY" not in environ


async def test_an_underscore_copy_of_the_key_header_is_neither_a_key_nor_forwarded(gateway, wsgi_backend):
    refused = await _post(f"{gateway}/mcp/keyed", {"X_Team_Key": KEY})
    assert refused.status_code == 403  # the gateway reads the configured name only
    accepted = await _post(f"{gateway}/mcp/keyed", {"X-Team-Key": KEY, "X_Team_Key": KEY})
    assert accepted.status_code == 200
    [environ] = wsgi_backend.environs
    assert not any(KEY in value for value in environ.values()), environ


async def test_ordinary_underscore_headers_still_pass(gateway, wsgi_backend):
    response = await _post(f"{gateway}/mcp/configured", {"X_Request_Source": "agent_7"})
    assert response.status_code == 200
    assert wsgi_backend.environs[0]["HTTP_X_REQUEST_SOURCE"] == "agent_7"


ODD_KEYS = {
    "Latin-1 bytes": b"KEY\xe9\xff",
    "UTF-8 bytes": "KEY\u00e9".encode(),
    "a control character": b"KEY\x01",
    "a comma list": b"KEY, KEY",
    "two keys in one": b"KEYKEY",
    "empty": b"",
}


@pytest.mark.parametrize("value", ODD_KEYS.values(), ids=ODD_KEYS.keys())
async def test_odd_key_values_are_a_clean_refusal_never_a_500(gateway, wsgi_backend, value):
    with RawClient(gateway) as client:
        response = client.request(b"POST", b"/mcp/keyed", [(b"Host", gateway.removeprefix("http://").encode()),
                                                           (b"Content-Type", b"application/json"),
                                                           (b"X-Team-Key", value.replace(b"KEY", KEY.encode()))], PING)
    assert response.status in (400, 403), response.body  # h11 refuses a control character outright
    assert wsgi_backend.environs == []
    assert KEY.encode() not in response.body


async def test_the_original_url_a_front_end_echoes_never_carries_a_query_key_to_the_backend(gateway, wsgi_backend):
    """App Service's front end adds X-Original-URL and X-WAWS-Unencoded-URL (nginx ingress
    X-Original-URI, Traefik X-Forwarded-Uri, IIS X-Rewrite-URL): the URL as the client sent it,
    query included. The gateway strips a key from the query; these copies must not carry it on."""
    target = f"/mcp/keyed?x=1&subscription-key={KEY}"
    echoes = {name: target for name in ("X-Original-URL", "X-WAWS-Unencoded-URL", "X-Original-URI",
                                        "X-Forwarded-Uri", "X-Rewrite-URL")}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{gateway}{target}", content=PING, headers={**JSON, **echoes})
    assert response.status_code == 200
    [environ] = wsgi_backend.environs
    assert not any(KEY in value for value in environ.values()), environ
