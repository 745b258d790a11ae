"""The request path under random, hostile input: never a 500, no inbound credential reaches a
backend unless its server forwards it, and every response answers its own request.

Real peers: the gateway under uvicorn, the Entra and Key Vault emulators, a recording
backend; requests are written byte for byte on one keep-alive connection (raw_http),
so a response left over from an earlier request would show up as the wrong tag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import Receive, Scope, Send

from raw_http import RawClient
from shared.inbound.keys import key_digest
from test_inbound_tokens import AUDIENCE, CLIENT_APP

MARK = "SECRET"
"""In every value of a credential every server drops; none may reach any backend."""
MIXED = "XKEY"
"""In every value of the `mixed` server's own credential names (X-Key, ?key=, ?access_token=)."""
CALLER_API_KEY = "APIKEY-from-the-caller"
"""The caller's copy of the header the `secret` server's outbound credential uses."""
KEY = f"{MARK}-subscription-key-0123456789"
KEY2 = f"{MIXED}-secondary-key-0123456789"
BACKEND_SECRET = "kv-held-backend-value"
TAG = b"x-test-tag"
EASY_AUTH = ["X-MS-CLIENT-PRINCIPAL", "X-MS-CLIENT-PRINCIPAL-ID", "X-MS-TOKEN-AAD-ACCESS-TOKEN",
             "X-MS-TOKEN-GOOGLE-ID-TOKEN", "X-ZUMO-AUTH", "X-ARR-ClientCert"]


@dataclass
class TaggingBackend:
    """Records each request and answers with the request's own tag, in a header and the body."""

    seen: list[tuple[str, list[tuple[bytes, bytes]], bytes]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = list(scope["headers"])
        self.seen.append((scope["path"], headers, scope["query_string"]))
        tag = dict(headers).get(TAG, b"none")
        body = b'{"tag":"' + tag + b'"}'
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (TAG, tag), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


SERVERS = ["keyed", "mixed", "entra", "forwarding", "secret", "open"]


@pytest.fixture
def world(start_server, start_gateway, entra, key_vault, managed_identity_env, emulator_pki):
    key_vault.set_secret("backend-api-key", BACKEND_SECRET)
    backend = TaggingBackend()
    url = f"{start_server(backend, lifespan='off').base_url}/mcp"
    entra_auth = {"tenantId": entra.tenant_id, "audiences": [AUDIENCE], "authorityHost": entra.authority_host}
    servers = {
        "keyed": {"url": url, "auth": {"subscriptionKey": {}}},
        "mixed": {"url": url, "auth": {"mode": "any", "subscriptionKey": {"headerName": "X-Key", "queryParameterName": "key"},
                                       "entra": {**entra_auth, "queryParameterName": "access_token"}}},
        "entra": {"url": url, "auth": {"entra": entra_auth}},
        "forwarding": {"url": url, "auth": {"entra": entra_auth}, "outbound": {"forwardAuthorization": True}},
        "secret": {"url": url, "anonymous": True,
                   "outbound": {"secretHeader": {"name": "X-Api-Key", "keyVaultSecret": {"name": "backend-api-key"}}}},
        "open": {"url": f"{url}?api-version=1", "anonymous": True, "headers": {"X-Tenant": "contoso"}},
    }
    base = start_gateway({
        "servers": servers,
        "subscriptions": {"all": {"servers": ["*"], "primaryKey": {"sha256": key_digest(KEY)},
                                  "secondaryKey": {"sha256": key_digest(KEY2)}}},
        "gateway": {"caBundle": emulator_pki.ca_path, "keyVaultUrl": key_vault.vault_url,
                    "cors": {"allowOrigins": ["http://localhost:6274"]}},
    })
    tokens = (entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP}), entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP, "oid": "u2"}))
    with RawClient(base) as client:
        yield client, base.split("//")[1], tokens, backend


def spelled(name: str):
    """`name` as a client may spell it in a query: any case, any character percent-encoded."""
    def encode(flags: list[tuple[bool, bool, bool]]) -> str:
        out = []
        for ch, (upper, escape, lower_hex) in zip(name, flags):
            ch = ch.upper() if upper else ch
            hex_ = f"%{ord(ch):02X}"
            out.append((hex_.lower() if lower_hex else hex_) if escape else ch)
        return "".join(out)
    return st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), min_size=len(name), max_size=len(name)).map(encode)


def header_case(name: str):
    return st.sampled_from([name, name.lower(), name.upper(), name.title()])


text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
safe_query_text = st.text(st.sampled_from("abcXYZ019-_.~%+=;,/"), max_size=8)


def credentials(token: str, mixed_token: str) -> tuple:
    """(header strategy, query parameter strategy): credential names in any spelling, each with its own values."""
    header_values = {
        "Authorization": [f"Bearer {token}", f"bearer {token}", f"Bearer {MARK}.not.atoken", f"Basic {MARK}"],
        "Ocp-Apim-Subscription-Key": [KEY, f"{MARK}-wrong"],
        "Cookie": [f"session={MARK}"],
        "Proxy-Authorization": [f"Basic {MARK}"],
        **{name: [f"{MARK}-easy-auth"] for name in EASY_AUTH},
        "X-Key": [KEY2, f"{MIXED}-wrong"],
        "X-Api-Key": [CALLER_API_KEY],
    }
    param_values = {
        "subscription-key": [KEY, f"{MARK}-wrong"],
        "key": [KEY2, f"{MIXED}-wrong"],
        "access_token": [mixed_token, f"{MIXED}.not.atoken"],
    }
    headers = st.sampled_from(sorted(header_values)).flatmap(
        lambda name: st.tuples(header_case(name), st.sampled_from(header_values[name])))
    params = st.sampled_from(sorted(param_values)).flatmap(
        lambda name: st.tuples(spelled(name), st.sampled_from(param_values[name])))
    return headers, params


def requests(host: str, tokens: tuple[str, str]):
    credential_header, credential_param = credentials(*tokens)
    odd_header = st.tuples(
        st.sampled_from(["Origin", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-For", "Forwarded", "Connection",
                         "Content-Type", "Accept", "Mcp-Session-Id", "X-Tenant"] * 3 + ["Host"]).flatmap(header_case),
        st.sampled_from(["http://localhost:6274", "http://evil.example", "null", "https", "javascript", "evil.example",
                         "127.0.0.1:@evil.example", "keep-alive, Authorization", "application/json", "*/*"]) | text,
    )
    other_param = st.tuples(st.sampled_from(["api-version", "x", "subscription key"]).flatmap(spelled) | safe_query_text,
                            safe_query_text)
    path = st.sampled_from([f"/mcp/{s}" for s in SERVERS] * 4 + [
        "/mcp/nope", "/healthz", "/.well-known/oauth-protected-resource/mcp/entra", "/mcp/%6Beyed", "/mcp//open",
        "/mcp/open/", "/MCP/open", "/mcp/open/sse", "/mcp/open%3Fsubscription-key=x",
    ])
    body = st.one_of(st.just(None), st.binary(max_size=64), st.just(b"json"))
    return st.fixed_dictionaries({
        "method": st.sampled_from([b"POST"] * 5 + [b"GET", b"DELETE", b"PUT", b"OPTIONS", b"HEAD", b"PATCH"]),
        "path": path,
        "params": st.lists(credential_param | other_param, max_size=4),
        "headers": st.lists(credential_header | odd_header, max_size=6),
        # most requests carry one good credential, so that many get past auth to a backend
        "auth": st.sampled_from([None, ("Authorization", f"Bearer {tokens[0]}"), ("Ocp-Apim-Subscription-Key", KEY),
                                 ("X-Key", KEY2), ("Authorization", f"Bearer {tokens[0]}")]),
        "body": body,
        "host": st.sampled_from([host] * 8 + ["localhost", "evil.example", f"{host}:@evil.example", f"{host.upper()}."]),
    })


def _query(params: list[tuple[str, str]]) -> str:
    def form(text: str) -> str:
        return text.replace(" ", "+").replace("&", "%26").replace("#", "%23")

    return "&".join(f"{form(n)}={form(v)}" for n, v in params)


def test_hostile_requests_never_500_never_leak_credentials_and_answer_their_own_request(world):
    client, host, tokens, backend = world
    counter = iter(range(1, 10**9))

    @settings(max_examples=1500, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(request=requests(host, tokens))
    def example(request):
        tag = next(counter)
        params = request["params"]
        target = request["path"].encode() + (b"?" + _query(params).encode("latin-1") if params else b"")
        headers = [(b"Host", request["host"].encode())]
        headers += [(n.encode(), v.encode("latin-1")) for n, v in request["headers"]]
        if request["auth"]:
            headers.insert(len(headers) // 2, tuple(part.encode() for part in request["auth"]))
        headers.append((b"X-Test-Tag", str(tag).encode()))
        body = request["body"]
        if body == b"json":
            body = json.dumps({"jsonrpc": "2.0", "id": tag, "method": "ping"}).encode()
            headers.append((b"Content-Type", b"application/json"))
        before = len(backend.seen)
        response = client.request(request["method"], target, headers, body or b"")

        assert response.status < 500, (response.status, response.body)
        answered = response.header(TAG)
        if answered is not None:
            assert answered == str(tag).encode(), "a response for another request"
        if response.body.startswith(b"{") and request["body"] == b"json" and b'"jsonrpc"' in response.body:
            assert json.loads(response.body).get("id") in (tag, None)
        if response.body.startswith(b'{"tag"'):
            assert response.body == b'{"tag":"' + str(tag).encode() + b'"}'
        reached = backend.seen[before:]
        assert len(reached) <= 1
        for _, raw, query in reached:
            server = request["path"].split("/")[2] if request["path"].startswith("/mcp/") else ""
            check_nothing_leaked(server, raw, query, tokens)
        for credential in (KEY, KEY2, *tokens):
            assert credential.encode() not in response.body

    example()
    assert len(backend.seen) > 150, "too few examples reached a backend to mean anything"


def check_nothing_leaked(server: str, raw: list[tuple[bytes, bytes]], query: bytes, tokens: tuple[str, str]) -> None:
    token, mixed_token = tokens
    forwarded = [v for k, v in raw if k == b"authorization"]
    if server == "forwarding":
        # forwarded only as validated: one header, carrying the token the gateway checked
        assert len(forwarded) <= 1 and all(v.split(b" ", 1)[-1] == token.encode() for v in forwarded), forwarded
        raw = [(k, v) for k, v in raw if k != b"authorization"]
    else:
        assert not forwarded, forwarded
    everything = repr(raw).encode() + query
    assert MARK.encode() not in everything, everything
    assert token.encode() not in everything, "the caller's token reached a backend"
    if server == "mixed":
        assert MIXED.encode() not in everything and mixed_token.encode() not in everything, everything
    names = [k for k, _ in raw]
    for prefix in (b"x-ms-client-principal", b"x-ms-token-", b"x-zumo-", b"x-arr-clientcert", b"cookie", b"proxy-authorization"):
        assert not any(n.startswith(prefix) for n in names), prefix
    if server == "secret":
        assert [v for k, v in raw if k == b"x-api-key"] == [BACKEND_SECRET.encode()]
    if server == "open":
        assert [v for k, v in raw if k == b"x-tenant"] == [b"contoso"]
        assert query.startswith(b"api-version=1") and query.lower().count(b"api") == 1
