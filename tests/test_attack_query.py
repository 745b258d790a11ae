"""Attacks with query strings: credential and configured parameters in spellings a backend may read.

`;` separated parameters in HTML 4 forms and still does in some frameworks (Perl's CGI,
Rack before 3, Java's matrix-minded servers): a parameter cloaked behind `;` is invisible
to a gateway that splits on `&` only, and a second copy of it to such a backend.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import httpx
import pytest

from backends.recorder import RecordingBackend
from raw_http import RawClient
from shared.inbound.keys import key_digest

KEY = "query-attack-subscription-key-0123456789"
PING = b'{"jsonrpc":"2.0","id":6,"method":"ping"}'
JSON = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


@pytest.fixture
def world(start_server, start_gateway):
    recorder = RecordingBackend()
    url = f"{start_server(recorder, lifespan='off').base_url}/mcp"
    base = start_gateway({
        "servers": {"versioned": {"url": f"{url}?api-version=2026-01-01", "anonymous": True},
                    "keyed": {"url": url, "auth": {"subscriptionKey": {}}}},
        "subscriptions": {"team": {"servers": ["*"], "primaryKey": {"sha256": key_digest(KEY)}}},
    })
    return base, recorder


async def post(base: str, path: str, raw_query: str, headers: dict | None = None) -> httpx.Response:
    target = httpx.URL(f"{base}{path}").copy_with(query=raw_query.encode())
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(target, content=PING, headers={**JSON, **(headers or {})})


def as_semicolon_splitter_reads(query: bytes) -> list[tuple[str, str]]:
    """What a backend that takes `;` as a separator too sees."""
    return parse_qsl(query.decode().replace(";", "&"), keep_blank_values=True)


@pytest.mark.parametrize("query", ["x=1;api-version=evil", "api-version=evil;x=1", "x=1;API%2Dversion=evil&y=2"])
async def test_a_configured_parameter_cannot_be_restated_behind_a_semicolon(world, query):
    base, recorder = world
    response = await post(base, "/mcp/versioned", query)
    assert response.status_code == 200
    seen = recorder.requests[-1].query
    assert [v for k, v in as_semicolon_splitter_reads(seen) if k.lower() == "api-version"] == ["2026-01-01"], seen


async def test_a_key_behind_a_semicolon_never_reaches_the_backend(world):
    base, recorder = world
    response = await post(base, "/mcp/keyed", f"x=1;subscription-key={KEY}", {"Ocp-Apim-Subscription-Key": KEY})
    assert response.status_code == 200
    assert KEY not in recorder.requests[-1].query.decode()


async def test_semicolons_that_cloak_nothing_pass_unchanged(world):
    base, recorder = world
    response = await post(base, "/mcp/versioned", "filter=a;b&path=x;y=z")
    assert response.status_code == 200
    assert recorder.requests[-1].query == b"api-version=2026-01-01&filter=a;b&path=x;y=z"


HELD = {
    # not the parameter's name after one form decoding: neither read nor forwarded as a credential
    "double encoding": (f"subscription%252Dkey={KEY}", 403),
    "a plus is a space": (f"subscription+key={KEY}", 403),
    "an empty name": (f"={KEY}", 403),
    "a name without a value": ("subscription-key", 403),
    "an empty value then the key": (f"subscription-key=&subscription-key={KEY}", 400),
    "the key twice in two spellings": (f"Subscription-Key={KEY}&subscription%2Dkey={KEY}", 400),
    "a key-looking value": (f"x=subscription-key%3D{KEY}", 403),
}


@pytest.mark.parametrize("query, status", HELD.values(), ids=HELD.keys())
async def test_spellings_that_are_not_the_parameter_do_not_authenticate(world, query, status):
    base, recorder = world
    response = await post(base, "/mcp/keyed", query)
    assert response.status_code == status, response.text
    assert recorder.requests == []
    assert KEY not in response.text


async def test_a_fragment_in_the_request_target_restates_nothing(world):
    base, recorder = world
    with RawClient(base) as client:
        response = client.request(b"POST", f"/mcp/versioned?x=1#api-version=evil&subscription-key={KEY}".encode(),
                                  [(b"Host", base.removeprefix("http://").encode()), (b"Content-Type", b"application/json")],
                                  PING)
    assert response.status == 200
    seen = recorder.requests[-1].query
    assert b"#" not in seen and KEY.encode() not in seen  # dropped, or the mark escaped as %23 by the gateway
    assert [v for k, v in as_semicolon_splitter_reads(seen) if k.lower() == "api-version"] == ["2026-01-01"], seen
