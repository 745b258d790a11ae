"""What the gateway names as itself (metadata, challenges, X-Forwarded-*) comes from parsed, trusted parts only."""

from __future__ import annotations

import json
import re

import pytest

from backends.recorder import RecordingBackend
from helpers import anonymous, gateway_config
from raw_http import RawClient
from test_inbound_tokens import entra_server

PRM = b"/.well-known/oauth-protected-resource/mcp/docs"
PING = b'{"jsonrpc":"2.0","id":5,"method":"ping"}'
JSON = [(b"Content-Type", b"application/json"), (b"Accept", b"application/json, text/event-stream")]
# RFC 9110 challenge: auth-scheme 1*SP auth-param *( OWS "," OWS auth-param ), every value a quoted-string.
_QUOTED = r'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e]|\\[\t\x20-\x7e])*"'
_CHALLENGE = re.compile(rf"Bearer [a-z_]+={_QUOTED}(?:, [a-z_]+={_QUOTED})*")


@pytest.fixture
def start(start_server, start_gateway, entra, emulator_pki):
    def run(environ: dict | None = None, **gateway):
        recorder = RecordingBackend()
        backend = start_server(recorder, lifespan="off")
        servers = {"docs": entra_server(f"{backend.base_url}/mcp", entra), "open": anonymous(f"{backend.base_url}/mcp")}
        base = start_gateway(gateway_config(servers, caBundle=emulator_pki.ca_path, **gateway), environ)
        return RawClient(base), base.split("//")[1], recorder

    return run


def metadata(client: RawClient, host: bytes, *extra: tuple[bytes, bytes]):
    return client.request(b"GET", PRM, [(b"Host", host), *extra])


def challenge(client: RawClient, host: bytes, *extra: tuple[bytes, bytes]):
    return client.request(b"POST", b"/mcp/docs", [(b"Host", host), *JSON, *extra], PING)


@pytest.mark.parametrize("host", [b"127.0.0.1:@evil.example", b"localhost:80@evil.example", b"localhost:1#.evil.example",
                                  b"localhost:99999", b"[::1]evil.example"])
async def test_a_host_with_anything_after_the_name_cannot_make_the_gateway_name_another_host(start, host):
    client, _, _ = start(allowedHosts=["*"])
    with client:
        for response in (metadata(client, host), challenge(client, host)):
            assert response.status == 400, response.body
            assert b"evil.example" not in response.body and b"evil.example" not in repr(response.headers).encode()


async def test_forwarded_headers_are_ignored_unless_trusted(start):
    client, authority, recorder = start()
    forged = [(b"X-Forwarded-Proto", b"javascript"), (b"X-Forwarded-Host", b"evil.example")]
    with client:
        document = json.loads(metadata(client, authority.encode(), *forged).body)
        answer = challenge(client, authority.encode(), *forged)
        proxied = client.request(b"POST", b"/mcp/open", [(b"Host", authority.encode()), *JSON, *forged], PING)
    assert document["resource"] == f"http://{authority}/mcp/docs"
    assert f'resource_metadata="http://{authority}/.well-known' in answer.header(b"www-authenticate").decode()
    assert proxied.status == 200
    assert recorder.requests[-1].headers["x-forwarded-proto"] == "http"
    assert recorder.requests[-1].headers["x-forwarded-host"] == authority


async def test_trusted_forwarded_headers_name_the_proxy_and_must_name_an_allowed_host(start):
    client, authority, recorder = start(trustForwardedHeaders=True, allowedHosts=["mcp.contoso.com"])
    host = authority.encode()
    with client:
        ok = metadata(client, host, (b"X-Forwarded-Proto", b"http, HTTPS"), (b"X-Forwarded-Host", b"evil.example, MCP.contoso.com"))
        foreign = metadata(client, host, (b"X-Forwarded-Proto", b"https"), (b"X-Forwarded-Host", b"evil.example"))
        odd_proto = metadata(client, host, (b"X-Forwarded-Proto", b"javascript"))
        odd_host = metadata(client, host, (b"X-Forwarded-Host", b"mcp.contoso.com:@evil.example"))
        proxied = client.request(b"POST", b"/mcp/open", [(b"Host", host), *JSON, (b"X-Forwarded-Proto", b"https"),
                                                         (b"X-Forwarded-Host", b"mcp.contoso.com")], PING)
    assert json.loads(ok.body)["resource"] == "https://mcp.contoso.com/mcp/docs"
    assert "X-Forwarded-Host" in ok.header(b"vary").decode()
    assert foreign.status == 421 and odd_proto.status == 400 and odd_host.status == 400
    assert proxied.status == 200
    assert recorder.requests[-1].headers["x-forwarded-proto"] == "https"
    assert recorder.requests[-1].headers["x-forwarded-host"] == "mcp.contoso.com"


async def test_on_app_service_the_default_host_is_named_https_and_loopback_keeps_its_scheme(start):
    """Functions' front end terminates TLS: the worker sees http, the client used https."""
    client, authority, recorder = start({"WEBSITE_HOSTNAME": "gw.azurewebsites.net"})
    with client:
        azure = json.loads(metadata(client, b"gw.azurewebsites.net").body)
        local = json.loads(metadata(client, authority.encode()).body)
        proxied = client.request(b"POST", b"/mcp/open", [(b"Host", b"gw.azurewebsites.net"), *JSON], PING)
    assert azure["resource"] == "https://gw.azurewebsites.net/mcp/docs"
    assert local["resource"] == f"http://{authority}/mcp/docs"
    assert proxied.status == 200 and recorder.requests[-1].headers["x-forwarded-proto"] == "https"


async def test_metadata_that_depends_on_the_request_says_so_to_caches(start):
    client, authority, _ = start()
    with client:
        response = metadata(client, authority.encode())
    assert response.status == 200
    assert response.header(b"vary") == b"Host" and b"max-age" in response.header(b"cache-control")


async def test_public_base_url_wins_over_everything_the_request_says(start):
    client, authority, _ = start({"WEBSITE_HOSTNAME": "gw.azurewebsites.net"}, publicBaseUrl="https://mcp.contoso.com",
                                 trustForwardedHeaders=True)
    with client:
        response = metadata(client, b"gw.azurewebsites.net", (b"X-Forwarded-Host", b"localhost"), (b"X-Forwarded-Proto", b"http"))
    assert json.loads(response.body)["resource"] == "https://mcp.contoso.com/mcp/docs"
    assert response.header(b"vary") is None


def test_challenge_parameters_are_rfc_9110_quoted_strings():
    from shared.config.inbound import EntraAuth, TokenRules
    from shared.config.model import ServerConfig
    from shared.inbound.metadata import bearer_challenge

    rules = TokenRules(audiences=("a",), required_scopes=('api://x/say"hi"', "back\\slash", "cr\r\nInjected: 1"))
    token = EntraAuth(tenant_id="t", rules=rules)
    header = bearer_challenge("https://gw", ServerConfig(name="docs", url="http://b"), token, "invalid_token",
                              'token "quoted" \\ and \x00 control')
    assert _CHALLENGE.fullmatch(header), header
    assert "\r" not in header and "\n" not in header and "\x00" not in header
    assert r'scope="api://x/say\"hi\" back\\slash cr??Injected: 1"' in header
