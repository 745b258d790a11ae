"""What crosses the gateway: MCP headers do, credentials and hop-by-hop headers never."""

from __future__ import annotations

import re

import httpx

from backends.recorder import RecordingBackend
from helpers import anonymous, gateway_config

INBOUND = {
    "authorization": "Bearer caller-token-must-not-leak",
    "cookie": "session=caller-cookie",
    "ocp-apim-subscription-key": "caller-key-must-not-leak",
    "proxy-authorization": "Basic cHJveHk6cHc=",
    "x-ms-client-principal": "eyJpZCI6InVzZXIifQ==",
    "x-ms-token-aad-access-token": "easy-auth-token",
    "te": "trailers",
    "connection": "keep-alive, x-client-hop",
    "x-client-hop": "hop",
    "upgrade": "h2c",
    "origin": "http://localhost:3000",
    "x-forwarded-for": "203.0.113.7",
    "mcp-session-id": "session-abc",
    "mcp-protocol-version": "2026-07-28",
    "last-event-id": "stream-1:17",
    "mcp-method": "tools/call",
    "mcp-name": "add",
    "mcp-param-region": "westeurope",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "tracestate": "congo=t61rcWkgMzE",
    "accept": "application/json, text/event-stream",
    "content-type": "application/json",
    "user-agent": "hygiene-test/1.0",
}


async def _through_gateway(start_server, start_gateway, **server_extra):
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    base = start_gateway(gateway_config({"r": anonymous(f"{backend.base_url}/mcp", **server_extra)}))
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{base}/mcp/r?subscription-key=caller-key-must-not-leak&tenant=contoso",
            content=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
            headers=INBOUND,
        )
    assert response.status_code == 200
    return recorder.requests[-1], response


async def test_no_inbound_credential_or_hop_by_hop_header_reaches_the_backend(start_server, start_gateway):
    seen, _ = await _through_gateway(start_server, start_gateway)
    for name in ("authorization", "cookie", "ocp-apim-subscription-key", "proxy-authorization",
                 "x-ms-client-principal", "x-ms-token-aad-access-token", "te", "x-client-hop", "upgrade", "origin"):
        assert name not in seen.headers, name
    everything = repr(seen.raw_headers) + seen.query.decode()
    for secret in ("caller-token-must-not-leak", "caller-key-must-not-leak", "caller-cookie", "easy-auth-token"):
        assert secret not in everything
    assert seen.query == b"tenant=contoso"
    assert seen.body == b'{"jsonrpc":"2.0","id":1,"method":"ping"}'


async def test_mcp_and_trace_headers_reach_the_backend_unchanged(start_server, start_gateway):
    seen, _ = await _through_gateway(start_server, start_gateway)
    for name in ("mcp-session-id", "mcp-protocol-version", "last-event-id", "mcp-method", "mcp-name",
                 "mcp-param-region", "traceparent", "tracestate", "accept", "content-type", "user-agent"):
        assert seen.headers[name] == INBOUND[name], name


async def test_forwarding_headers_describe_the_original_request(start_server, start_gateway):
    seen, _ = await _through_gateway(start_server, start_gateway)
    assert seen.headers["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert seen.headers["x-forwarded-proto"] == "http"
    assert re.fullmatch(r"127\.0\.0\.1:\d+", seen.headers["x-forwarded-host"])
    assert seen.headers["host"] != seen.headers["x-forwarded-host"]


async def test_a_missing_traceparent_is_started_and_static_headers_are_added(start_server, start_gateway):
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    base = start_gateway(gateway_config({"r": anonymous(f"{backend.base_url}/mcp", headers={"X-Tenant": "contoso"})}))
    async with httpx.AsyncClient(timeout=10) as client:
        await client.post(f"{base}/mcp/r", content=b"{}", headers={"content-type": "application/json"})
    seen = recorder.requests[-1]
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", seen.headers["traceparent"])
    assert seen.headers["x-tenant"] == "contoso"


async def test_mcp_response_headers_come_back_and_hop_by_hop_and_cookies_do_not(start_server, start_gateway):
    _, response = await _through_gateway(start_server, start_gateway)
    assert response.headers["mcp-session-id"] == "session-123"
    assert response.headers["mcp-protocol-version"] == "2025-11-25"
    assert response.headers["x-backend-visible"] == "yes"
    for name in ("set-cookie", "x-backend-hop", "keep-alive"):
        assert name not in response.headers, name


def test_without_a_client_accept_encoding_the_backend_is_asked_for_identity():
    from shared.headers import upstream_headers

    headers = dict(upstream_headers([(b"host", b"internal"), (b"accept", b"*/*"), (b"x-forwarded-proto", b"http")],
                                    client_ip="10.0.0.1", scheme="https", host="gw"))
    assert headers[b"accept-encoding"] == b"identity"
    assert headers[b"x-forwarded-proto"] == b"https" and headers[b"x-forwarded-host"] == b"gw"


async def test_the_served_gateway_names_no_server_software(start_server):
    """`python -m shared serve` answers without a Server header (nothing to fingerprint),
    neither its own nor the backend's, and still dates its answers."""
    from gateway_process import start_gateway_process

    backend = start_server(RecordingBackend(), lifespan="off")
    gateway = start_gateway_process(gateway_config({"r": anonymous(f"{backend.base_url}/mcp")}))
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            health = await client.get(f"{gateway.url}/healthz")
            proxied = await client.post(f"{gateway.url}/mcp/r", content=b"{}", headers={"content-type": "application/json"})
    finally:
        gateway.stop()
    for response in (health, proxied):
        assert response.status_code == 200
        assert "server" not in response.headers
        assert "date" in response.headers


async def test_a_configured_query_is_kept_and_the_clients_follows_it(start_server, start_gateway):
    """A backend URL with its own query (an API version, say) keeps it; the
    client's parameters come after it, less credentials, and stay inside the query."""
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    base = start_gateway(gateway_config({"r": anonymous(f"{backend.base_url}/mcp?api-version=2026-01-01")}))
    async with httpx.AsyncClient(timeout=10) as client:
        bare = await client.post(f"{base}/mcp/r", content=b"{}", headers={"content-type": "application/json"})
        with_query = await client.post(
            f"{base}/mcp/r?subscription-key=k&tenant=contoso&note=a%20b",
            content=b"{}",
            headers={"content-type": "application/json"},
        )
    assert bare.status_code == with_query.status_code == 200
    assert [r.query for r in recorder.requests] == [b"api-version=2026-01-01", b"api-version=2026-01-01&tenant=contoso&note=a%20b"]


def test_query_bytes_that_could_break_the_request_line_are_percent_encoded():
    from shared.proxy import UpstreamTarget

    target = UpstreamTarget.parse("http://backend:8080/mcp")
    assert target.with_query(b"a=1 HTTP/1.1\r\nx: y&b=\xff").path == b"/mcp?a=1%20HTTP/1.1%0D%0Ax:%20y&b=%FF"
    assert target.with_query(b"").path == b"/mcp" and target.host == b"backend:8080"


APP_SERVICE_AUTH = {
    "X-MS-TOKEN-GOOGLE-ACCESS-TOKEN": "google-token-must-not-leak",
    "x-ms-token-facebook-id-token": "facebook-token-must-not-leak",
    "X-MS-TOKEN-AAD-EXPIRES-ON": "2030-01-01T00:00:00Z",
    "X-ZUMO-AUTH": "zumo-token-must-not-leak",
    "X-MS-CLIENT-PRINCIPAL-ROLES": "admin",
    "X-ARR-ClientCert": "client-cert-must-not-leak",
}


async def test_every_app_service_authentication_header_family_is_dropped(start_server, start_gateway):
    """Easy Auth's headers for every identity provider, not only Entra's, carry the caller's tokens."""
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    base = start_gateway(gateway_config({"r": anonymous(f"{backend.base_url}/mcp")}))
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{base}/mcp/r", content=b"{}", headers={**APP_SERVICE_AUTH, "x-msal-kept": "1"})
    assert response.status_code == 200
    seen = recorder.requests[-1]
    for name in APP_SERVICE_AUTH:
        assert name.lower() not in seen.headers, name
    assert seen.headers["x-msal-kept"] == "1"


async def test_a_configured_header_replaces_any_copy_the_caller_sent(start_server, start_gateway):
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    base = start_gateway(gateway_config({"r": anonymous(f"{backend.base_url}/mcp", headers={"X-Tenant": "contoso"})}))
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{base}/mcp/r", content=b"{}",
                                     headers=[("X-Tenant", "evil"), ("x-tenant", "evil2"), ("content-type", "application/json")])
    assert response.status_code == 200
    assert [v for k, v in recorder.requests[-1].raw_headers if k == b"x-tenant"] == [b"contoso"]
