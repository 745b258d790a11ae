"""Credential query parameters: what authenticates is what is stripped, however it is spelled."""

from __future__ import annotations

import httpx
import pytest

from backends.recorder import RecordingBackend
from helpers import anonymous, gateway_config
from shared.inbound.keys import key_digest
from test_inbound_tokens import AUDIENCE, CLIENT_APP, JSON, PING

KEY = "query-key-must-not-leak-0123456789"
SUBSCRIPTIONS = {"agents": {"servers": ["*"], "primaryKey": {"sha256": key_digest(KEY)}}}


@pytest.fixture
def keyed(start_server, start_gateway):
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    base = start_gateway({"servers": {"docs": {"url": f"{backend.base_url}/mcp", "auth": {"subscriptionKey": {}}}},
                          "subscriptions": SUBSCRIPTIONS})
    return f"{base}/mcp/docs", recorder


async def post_raw(url: str, raw_query: str, headers: dict | None = None) -> httpx.Response:
    """POST with the query string exactly as given (httpx would re-encode a parsed one)."""
    target = httpx.URL(url).copy_with(query=raw_query.encode())
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(target, content=PING, headers={**JSON, **(headers or {})})


@pytest.mark.parametrize(
    "query",
    [
        f"subscription%2Dkey={KEY}",
        f"subscription%2dkey={KEY}",
        f"%73ubscription-key={KEY}",
        f"Subscription-Key={KEY}",
        f"SUBSCRIPTION%2DKEY={KEY}&x=1",
        f"x=1&subscription-key={KEY}",
    ],
)
async def test_a_key_in_any_spelling_of_the_parameter_name_authenticates_and_never_reaches_the_backend(keyed, query):
    url, recorder = keyed
    response = await post_raw(url, query)
    assert response.status_code == 200, response.text
    seen = recorder.requests[-1]
    assert KEY not in seen.query.decode() and KEY not in repr(seen.raw_headers)


@pytest.mark.parametrize(
    "query",
    [f"subscription%2Dkey=some-other-value&x=1", "subscription+key=harmless&subscription%2Dkey=junk"],
)
async def test_a_credential_parameter_is_stripped_even_when_the_key_came_in_the_header(keyed, query):
    url, recorder = keyed
    response = await post_raw(url, query, {"Ocp-Apim-Subscription-Key": KEY})
    assert response.status_code == 200, response.text
    seen = recorder.requests[-1].query.decode()
    assert "junk" not in seen and "some-other-value" not in seen
    assert "subscription%2D" not in seen.lower()


@pytest.mark.parametrize(
    "query",
    [
        f"subscription-key=wrong&subscription-key={KEY}",
        f"subscription-key={KEY}&subscription%2Dkey={KEY}",
        f"subscription-key={KEY}&Subscription-Key=other",
    ],
)
async def test_a_repeated_credential_parameter_is_refused(keyed, query):
    url, recorder = keyed
    response = await post_raw(url, query)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32600 and response.json()["id"] == 5
    assert KEY not in response.text
    assert recorder.requests == []


async def test_a_token_query_parameter_in_any_spelling_never_reaches_the_backend(start_server, start_gateway, entra, emulator_pki):
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    entra_settings = {"tenantId": entra.tenant_id, "audiences": [AUDIENCE], "authorityHost": entra.authority_host,
                      "queryParameterName": "access_token"}
    base = start_gateway(gateway_config({"api": {"url": f"{backend.base_url}/mcp", "auth": {"entra": entra_settings}}},
                                        caBundle=emulator_pki.ca_path))
    token = entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP})
    for query in (f"access%5Ftoken={token}", f"ACCESS_TOKEN={token}&x=1", f"access_token={token}"):
        response = await post_raw(f"{base}/mcp/api", query)
        assert response.status_code == 200, (query, response.text)
        assert token not in recorder.requests[-1].query.decode()
    assert len(recorder.requests) == 3


async def test_a_client_cannot_override_a_parameter_of_the_configured_url(start_server, start_gateway):
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    base = start_gateway(gateway_config({"r": anonymous(f"{backend.base_url}/mcp?api-version=2026-01-01&tenant=contoso")}))
    response = await post_raw(f"{base}/mcp/r", "api-version=evil&API%2Dversion=evil2&Tenant=evil3&x=1")
    assert response.status_code == 200
    assert recorder.requests[-1].query == b"api-version=2026-01-01&tenant=contoso&x=1"


def test_the_strip_decodes_names_as_the_parser_does():
    from shared.headers import query_names, strip_query_params

    names = frozenset({"subscription-key"})
    query = b"a=1&subscription%2Dkey=k&%53ubscription-Key=k&subscription+key=kept&b=%2D"
    assert strip_query_params(query, names) == b"a=1&subscription+key=kept&b=%2D"
    assert query_names(b"API-Version=1&x%5Fy=2&&z") == frozenset({"api-version", "x_y", "z"})
