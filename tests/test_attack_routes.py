"""Attacks with paths and keys: reaching a server without its own checks, or another server's metadata.

Every spelling of a path that the gateway resolves to a server must run that server's
auth; a subscription key opens the servers its subscription names and no others.
"""

from __future__ import annotations

import httpx
import pytest

from backends.recorder import RecordingBackend
from raw_http import RawClient
from shared.inbound.keys import key_digest

DOCS_KEY = "docs-team-key-0123456789abcdef"
DISABLED_KEY = "disabled-team-key-0123456789ab"
PING = b'{"jsonrpc":"2.0","id":4,"method":"ping"}'
AUDIENCE = "api://mcp-gateway"


@pytest.fixture
def world(start_server, start_gateway, entra, emulator_pki):
    recorder = RecordingBackend()
    url = f"{start_server(recorder, lifespan='off').base_url}/mcp"
    entra_auth = {"tenantId": entra.tenant_id, "audiences": [AUDIENCE], "authorityHost": entra.authority_host}
    base = start_gateway({
        "servers": {
            "open": {"url": f"{url}?for=open", "anonymous": True},
            "docs": {"url": f"{url}?for=docs", "auth": {"subscriptionKey": {}}},
            "billing": {"url": f"{url}?for=billing", "auth": {"subscriptionKey": {}}},
            "entra": {"url": f"{url}?for=entra", "auth": {"entra": entra_auth}},
        },
        "subscriptions": {
            "docs-team": {"servers": ["docs"], "primaryKey": {"sha256": key_digest(DOCS_KEY)}},
            "gone": {"servers": ["*"], "enabled": False, "primaryKey": {"sha256": key_digest(DISABLED_KEY)}},
        },
        "gateway": {"caBundle": emulator_pki.ca_path},
    })
    client = RawClient(base)
    yield client, base.removeprefix("http://"), recorder
    client.close()


def reached(recorder: RecordingBackend, server: str) -> int:
    return sum(r.query.startswith(f"for={server}".encode()) for r in recorder.requests)


DOCS_SPELLINGS = ["/mcp/docs", "/mcp/docs/", "//mcp/docs", "/mcp/%64ocs", "/mcp%2Fdocs", "/mcp/docs/mcp",
                  "/mcp/open/../docs", "/mcp/open%2F..%2Fdocs", "/mcp/./docs", "/MCP/docs", "/mcp/DOCS",
                  "/mcp/docs%00", "/mcp/docs;x=1", "/mcp/docs%20", "/.well-known/oauth-protected-resource/../../mcp/docs"]


def test_no_spelling_of_a_path_reaches_a_keyed_server_without_its_key(world):
    client, host, recorder = world
    for path in DOCS_SPELLINGS:
        response = client.request(b"POST", path.encode(), [(b"Host", host.encode()), (b"Content-Type", b"application/json")], PING)
        assert response.status in (403, 404), (path, response.status, response.body)
    assert recorder.requests == []


def test_a_key_opens_only_the_servers_of_its_subscription(world):
    client, host, recorder = world
    headers = [(b"Host", host.encode()), (b"Content-Type", b"application/json")]
    assert client.request(b"POST", b"/mcp/docs", [*headers, (b"Ocp-Apim-Subscription-Key", DOCS_KEY.encode())], PING).status == 200
    other = client.request(b"POST", b"/mcp/billing", [*headers, (b"Ocp-Apim-Subscription-Key", DOCS_KEY.encode())], PING)
    assert other.status == 403 and b"may not call server 'billing'" in other.body
    gone = client.request(b"POST", b"/mcp/docs", [*headers, (b"Ocp-Apim-Subscription-Key", DISABLED_KEY.encode())], PING)
    assert gone.status == 403 and b"disabled" in gone.body
    # a key is no token, a token is no key
    assert client.request(b"POST", b"/mcp/entra", [*headers, (b"Authorization", b"Bearer " + DOCS_KEY.encode())], PING).status == 401
    assert (reached(recorder, "docs"), reached(recorder, "billing"), reached(recorder, "entra")) == (1, 0, 0)


def test_metadata_is_served_for_token_servers_only(world):
    client, host, _ = world
    for path in [
        "/.well-known/oauth-protected-resource/mcp/docs",  # a server that takes no tokens
        "/.well-known/oauth-protected-resource/mcp/nope",
        "/.well-known/oauth-protected-resource/mcp/entra/sse",
        "/.well-known/oauth-protected-resource/mcp/entra/../docs",
        "/.well-known/oauth-protected-resourcex/mcp/entra",
    ]:
        response = client.request(b"GET", path.encode(), [(b"Host", host.encode())])
        assert response.status == 404, (path, response.body)


def test_metadata_never_names_a_host_the_gateway_does_not_serve(world):
    client, _, _ = world
    for host in ["evil.example", "localhost:1@evil.example", "evil.example#.localhost", "[::1]%25eth0", "localhost\\@evil"]:
        response = client.request(b"GET", b"/.well-known/oauth-protected-resource/mcp/entra", [(b"Host", host.encode())])
        assert response.status in (400, 421), host
        assert b"resource" not in response.body


def test_metadata_for_a_token_server_names_the_host_it_was_asked_on(world):
    client, host, _ = world
    response = client.request(b"GET", b"/.well-known/oauth-protected-resource/mcp/entra",
                              [(b"Host", host.encode()), (b"X-Forwarded-Host", b"evil.example"),
                               (b"X-Forwarded-Proto", b"https"), (b"Forwarded", b"host=evil.example;proto=https")])
    assert response.status == 200
    assert httpx.Response(200, content=response.body).json()["resource"] == f"http://{host}/mcp/entra"
