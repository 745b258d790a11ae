"""Client ID Metadata Documents: the SSRF guard (with the test switch off), size, time and
redirect limits, and HTTP caching, against real HTTPS servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from emulators.server import BackgroundServer
from shared.errors import OAuthError
from shared.oauth import client_metadata
from shared.oauth.client_metadata import ClientMetadataFetcher, is_public
from signin_support import REDIRECT, metadata_host  # noqa: F401 - fixture


def fetcher(pki, *, allow_private: bool = True, resolver=None) -> ClientMetadataFetcher:
    kwargs = {"resolver": resolver} if resolver else {}
    return ClientMetadataFetcher(ca_bundle=pki.ca_path, allow_private=allow_private, **kwargs)


async def refused(fetch: ClientMetadataFetcher, url: str) -> str:
    with pytest.raises(OAuthError) as caught:
        await fetch.get(url)
    assert caught.value.code == "invalid_client"
    return caught.value.message


async def test_a_good_document_is_read(metadata_host, emulator_pki):
    url = metadata_host.publish("/client.json")
    fetch = fetcher(emulator_pki)
    try:
        client = await fetch.get(url)
    finally:
        await fetch.aclose()
    assert client.name == "Metadata Client" and client.redirect_uris == (REDIRECT,) and client.kind == "metadata"
    assert client.vouching_host == "127.0.0.1"


async def test_loopback_and_private_addresses_are_refused_with_the_switch_off(metadata_host, emulator_pki):
    url = metadata_host.publish("/client.json")
    fetch = fetcher(emulator_pki, allow_private=False)
    try:
        assert "private, loopback" in await refused(fetch, url)
        assert "private, loopback" in await refused(fetch, url.replace("127.0.0.1", "localhost"))
    finally:
        await fetch.aclose()
    assert metadata_host.fetches.get("/client.json", 0) == 0  # never connected


@pytest.mark.parametrize("addresses", [
    ["10.0.0.7"], ["192.168.1.1"], ["172.16.0.1"], ["169.254.169.254"], ["100.64.0.1"], ["0.0.0.0"],
    ["::1"], ["fe80::1"], ["fc00::1"], ["::ffff:127.0.0.1"], ["::ffff:10.0.0.1"], ["224.0.0.1"],
    ["203.0.113.10", "10.0.0.7"],  # one inward answer among public ones is enough to refuse
])
async def test_names_that_resolve_inward_are_refused_before_any_connection(emulator_pki, addresses):
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return addresses

    fetch = fetcher(emulator_pki, allow_private=False, resolver=resolver)
    try:
        assert "private, loopback" in await refused(fetch, "https://client.example.com/meta.json")
    finally:
        await fetch.aclose()
    assert asked == ["client.example.com"]


def test_public_addresses_are_public():
    assert is_public("8.8.8.8") and is_public("2606:4700:4700::1111")
    assert not is_public("127.0.0.2") and not is_public("::ffff:192.168.0.1") and not is_public("198.18.0.1")


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1/client.json", "https"),
    ("https://127.0.0.1/", "path"),
    ("https://127.0.0.1", "path"),
    ("https://u:p@127.0.0.1/client.json", "user info"),
    ("https://127.0.0.1/a/../client.json", "'..'"),
    ("https://127.0.0.1/client.json#x", "fragment"),
])
async def test_urls_that_cannot_name_a_document_are_refused(emulator_pki, url, why):
    fetch = fetcher(emulator_pki)
    try:
        assert why in await refused(fetch, url)
    finally:
        await fetch.aclose()


@pytest.fixture
def hostile(emulator_pki):
    """Documents that misbehave: too large, endless, slow, redirecting."""
    release = asyncio.Event()
    loop_holder = {}

    async def large(request: Request) -> Response:
        return Response(b" " * (client_metadata.MAX_DOCUMENT_BYTES + 1), media_type="application/json")

    async def endless(request: Request) -> StreamingResponse:
        async def chunks():  # no Content-Length, far more than the limit; stops once the reader is gone
            for _ in range(1024):
                if await request.is_disconnected():
                    return
                yield b" " * 8192
        return StreamingResponse(chunks(), media_type="application/json")

    async def slow(request: Request) -> Response:
        loop_holder["loop"] = asyncio.get_running_loop()
        await release.wait()
        return Response(b"{}", media_type="application/json")

    async def redirect(request: Request) -> Response:
        return RedirectResponse("/elsewhere.json", status_code=302)

    async def mismatched(request: Request) -> Response:
        return Response(json.dumps({"client_id": "https://someone.else/client.json", "redirect_uris": [REDIRECT]}),
                        media_type="application/json")

    app = Starlette(routes=[Route("/large.json", large), Route("/endless.json", endless), Route("/slow.json", slow),
                            Route("/redirect.json", redirect), Route("/mismatched.json", mismatched)])
    server = BackgroundServer(app, pki=emulator_pki).start()
    yield server
    if "loop" in loop_holder:
        loop_holder["loop"].call_soon_threadsafe(release.set)
    server.stop()


async def test_oversized_endless_slow_and_redirecting_documents_are_refused(hostile, emulator_pki, monkeypatch):
    monkeypatch.setattr(client_metadata, "FETCH_SECONDS", 1.0)
    fetch = fetcher(emulator_pki)
    base = hostile.base_url
    try:
        assert "larger than" in await refused(fetch, f"{base}/large.json")
        assert "larger than" in await refused(fetch, f"{base}/endless.json")
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert "no answer within 1 seconds" in await refused(fetch, f"{base}/slow.json")
        assert loop.time() - started < 3
        assert "redirects" in await refused(fetch, f"{base}/redirect.json")
        assert "client_id is not the URL" in await refused(fetch, f"{base}/mismatched.json")
    finally:
        await fetch.aclose()


async def test_documents_are_cached_as_http_caching_allows(metadata_host, emulator_pki):
    cached = metadata_host.publish("/cached.json", headers={"cache-control": "public, max-age=600"})
    uncached = metadata_host.publish("/uncached.json", headers={"cache-control": "no-store"})
    fetch = fetcher(emulator_pki)
    try:
        for _ in range(3):
            await fetch.get(cached)
            await fetch.get(uncached)
        now = fetch.clock()
        fetch.clock = lambda: now + 601
        await fetch.get(cached)
    finally:
        await fetch.aclose()
    assert metadata_host.fetches["/cached.json"] == 2
    assert metadata_host.fetches["/uncached.json"] == 3


async def test_documents_must_describe_a_public_client(metadata_host, emulator_pki):
    secret = metadata_host.publish("/secret.json", client_secret="s3cret")
    confidential = metadata_host.publish("/confidential.json", token_endpoint_auth_method="client_secret_basic")
    no_redirects = metadata_host.publish("/none.json", redirect_uris=[])
    fetch = fetcher(emulator_pki)
    try:
        assert "client secret" in await refused(fetch, secret)
        assert "public clients" in await refused(fetch, confidential)
        with pytest.raises(OAuthError):
            await fetch.get(no_redirects)
    finally:
        await fetch.aclose()
