"""DNS-rebinding protection and CORS, checked at the gateway (the backend only sees the gateway)."""

from __future__ import annotations

import httpx
import pytest

from backends.recorder import RecordingBackend
from helpers import anonymous, gateway_config
from shared.config import GatewaySettings, CorsPolicy
from shared.errors import BadRequest, HostNotAllowed, OriginNotAllowed
from shared.guard import HostGuard

PING = b'{"jsonrpc":"2.0","id":3,"method":"ping"}'
JSON = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def guard(**settings) -> HostGuard:
    return HostGuard.from_settings(GatewaySettings(**settings), environ={"WEBSITE_HOSTNAME": "gw.azurewebsites.net"})


@pytest.mark.parametrize("host", ["localhost", "localhost:7071", "127.0.0.1:8000", "[::1]:80", "gw.azurewebsites.net",
                                  "mcp.contoso.com", "a.tools.contoso.com:443"])
def test_allowed_hosts(host):
    guard(allowed_hosts=("mcp.contoso.com", "*.tools.contoso.com")).check_host(host)


@pytest.mark.parametrize("host", ["evil.example", "localhost.evil.example", "tools.contoso.com", "127.0.0.2",
                                  "mcp.contoso.com.evil.example", "xtools.contoso.com", "[::2]"])
def test_refused_hosts(host):
    with pytest.raises(HostNotAllowed):
        guard(allowed_hosts=("mcp.contoso.com", "*.tools.contoso.com")).check_host(host)


@pytest.mark.parametrize("host", [
    "", None, "127.0.0.1:@evil.example", "localhost:80@evil.example", "user@localhost", "evil.example#.tools.contoso.com",
    "evil.example/.tools.contoso.com", "evil.example?.tools.contoso.com", "evil.example\\.tools.contoso.com",
    "localhost:", "localhost:0", "localhost:65536", "localhost:99999", "localhost:8a", "localhost:+80", "localhost:80:80",
    "[::1", "[::1]x", "[::1]:", "[fe80::1%25eth0]", "[fe80::1%eth0]:80", "loc%61lhost", "local host", "a..tools.contoso.com",
    ".tools.contoso.com", "127.1", "0x7f.0.0.1", "127.0.0.01", "1.2.3.4.5", "local\thost", "l\u00f6calhost", "-a-.tools.contoso.com",
])
def test_malformed_hosts_are_a_400_before_any_allow_list(host):
    with pytest.raises(BadRequest):
        guard(allowed_hosts=("*",)).check_host(host)
    with pytest.raises(BadRequest):
        guard(allowed_hosts=("mcp.contoso.com", "*.tools.contoso.com")).check_host(host)


def test_hosts_are_matched_by_their_parsed_parts():
    g = guard(allowed_hosts=("mcp.contoso.com", "*.tools.contoso.com", "[2001:db8::1]:8443"))
    assert g.check_host("MCP.Contoso.COM.").text == "mcp.contoso.com"
    assert g.check_host("a.b.tools.contoso.com:0443").text == "a.b.tools.contoso.com:443"
    assert g.check_host("[2001:DB8:0::1]:8443").text == "[2001:db8::1]:8443"
    assert g.check_host("[::1]").is_loopback and g.check_host("127.0.0.1:80").is_loopback


def test_host_with_a_port_in_the_allow_list_must_match_the_port():
    g = guard(allowed_hosts=("mcp.contoso.com:8443",))
    g.check_host("mcp.contoso.com:8443")
    with pytest.raises(HostNotAllowed):
        g.check_host("mcp.contoso.com:9000")


@pytest.mark.parametrize("origin", [None, "http://localhost:6274", "https://gw.azurewebsites.net", "https://app.contoso.com"])
def test_allowed_origins(origin):
    guard(allowed_origins=("https://app.contoso.com",)).check_origin(origin)


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "https://app.contoso.com.evil.example", "file://",
                                    "http://localhost:@evil.example", "http://localhost@evil.example",
                                    "javascript://localhost", "https://app.contoso.com/path"])
def test_refused_origins(origin):
    with pytest.raises(OriginNotAllowed):
        guard(allowed_origins=("https://app.contoso.com",)).check_origin(origin)


def test_cors_origins_are_allowed_origins_too():
    guard(cors=CorsPolicy(("https://inspector.contoso.com",))).check_origin("https://inspector.contoso.com")


def test_a_cors_wildcard_does_not_switch_the_origin_check_off():
    g = guard(cors=CorsPolicy(("*",)))
    with pytest.raises(OriginNotAllowed):
        g.check_origin("https://evil.example")
    guard(cors=CorsPolicy(("*",)), allowed_origins=("*",)).check_origin("https://evil.example")


async def _request(start_server, start_gateway, headers, method="POST", **gateway):
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    base = start_gateway(gateway_config({"r": anonymous(f"{backend.base_url}/mcp")}, **gateway))
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.request(method, f"{base}/mcp/r", content=PING if method == "POST" else None,
                                        headers={**JSON, **headers})
    return response, recorder


async def test_foreign_host_is_refused_before_the_backend(start_server, start_gateway):
    response, recorder = await _request(start_server, start_gateway, {"host": "evil.example"})
    assert response.status_code == 421
    assert response.json()["error"]["code"] == "host_not_allowed"
    assert recorder.requests == []


async def test_foreign_origin_is_refused_before_the_backend(start_server, start_gateway):
    response, recorder = await _request(start_server, start_gateway, {"origin": "http://evil.example"})
    assert response.status_code == 403
    assert recorder.requests == []


async def test_allowed_origin_passes(start_server, start_gateway):
    response, recorder = await _request(start_server, start_gateway, {"origin": "http://localhost:6274"})
    assert response.status_code == 200 and len(recorder.requests) == 1


async def test_options_without_cors_config_is_405(start_server, start_gateway):
    response, recorder = await _request(start_server, start_gateway, {"origin": "http://localhost:6274"}, method="OPTIONS")
    assert response.status_code == 405 and recorder.requests == []


async def test_cors_preflight_is_answered_by_the_gateway(start_server, start_gateway):
    response, recorder = await _request(
        start_server, start_gateway,
        {"origin": "https://inspector.contoso.com", "access-control-request-method": "POST",
         "access-control-request-headers": "content-type, mcp-session-id, mcp-protocol-version"},
        method="OPTIONS", cors={"allowOrigins": ["https://inspector.contoso.com"], "maxAgeSeconds": 60},
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "https://inspector.contoso.com"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "mcp-session-id" in response.headers["access-control-allow-headers"]
    assert response.headers["access-control-max-age"] == "60"
    assert recorder.requests == []


async def test_cors_headers_expose_the_mcp_headers_on_proxied_responses(start_server, start_gateway):
    response, _ = await _request(
        start_server, start_gateway, {"origin": "https://inspector.contoso.com"},
        cors={"allowOrigins": ["https://inspector.contoso.com"]},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://inspector.contoso.com"
    assert "Mcp-Session-Id" in response.headers["access-control-expose-headers"]


async def test_wrong_method_is_405(start_server, start_gateway):
    response, recorder = await _request(start_server, start_gateway, {}, method="PUT")
    assert response.status_code == 405 and recorder.requests == []


async def test_health_route(start_gateway):
    base = start_gateway(gateway_config({"r": anonymous("http://127.0.0.1:9/mcp")}))
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{base}/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"
