"""A REST API's backend credential: the same outbound modes as proxied servers, checked by the API.

The pet shop is wrapped in a CheckedBackend that answers 401 unless the request
carries the credential the emulated cloud would issue (a managed identity token for
the API's audience, or the current Key Vault secret in the configured header).
"""

from __future__ import annotations

import json

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from backends.rest_api import build_pet_shop
from emulators.fixtures import *  # noqa: F403 - fixtures
from helpers import gateway_config
from outbound_support import CheckedBackend, entra_token_check, header_check, run_gateway  # noqa: F401 - fixture

API = "api://pet-shop"


@pytest.fixture
def azure(entra, managed_identity_env, key_vault, emulator_pki):
    managed_identity_env.system_identity.app_roles[API] = ["Pets.ReadWrite"]
    return entra, managed_identity_env, key_vault, emulator_pki


@pytest.fixture
def serve(start_server, run_gateway, azure, tmp_path):
    _, _, key_vault, pki = azure

    def start(outbound: dict, check):
        shop = build_pet_shop()
        api = CheckedBackend(shop, check)
        base_url = start_server(api).base_url
        document = tmp_path / "shop.json"
        document.write_text(json.dumps(shop.openapi()))
        entry = {"anonymous": True, "outbound": outbound,
                 "openapi": {"document": str(document), "baseUrl": base_url, "include": {"operationIds": ["getPet"]}}}
        base, _ = run_gateway(gateway_config({"shop": entry}, caBundle=pki.ca_path, keyVaultUrl=key_vault.vault_url))
        return f"{base}/mcp/shop", api

    return start


async def call_get_pet(url: str, headers: dict[str, str] | None = None):
    async with httpx2.AsyncClient(headers=headers or {}, timeout=15) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            return await client.call_tool("getPet", {"pet_id": 1})


async def test_a_managed_identity_token_reaches_the_api(serve, azure):
    entra, mi, _, _ = azure
    check = entra_token_check(entra, audience=API, issuer=entra.v1_issuer,
                              claims={"appid": mi.system_identity.client_id, "roles": ["Pets.ReadWrite"]})
    url, api = serve({"managedIdentity": {"scope": f"{API}/.default"}}, check)
    first, second = await call_get_pet(url), await call_get_pet(url)
    assert not first.is_error and first.structured_content["name"] == "Rex" and not second.is_error
    assert len(api.accepted) == 2 and not api.rejected
    assert mi.token_request_count(resource=API) == 1  # cached, as for proxied servers


async def test_a_key_vault_secret_reaches_the_api_in_its_header_and_a_callers_copy_does_not(serve, azure):
    _, _, key_vault, _ = azure
    key_vault.set_secret("pet-shop-key", "key-value-789")
    url, api = serve({"secretHeader": {"name": "X-Api-Key", "keyVaultSecret": {"name": "pet-shop-key"}}},
                     header_check("x-api-key", lambda: "key-value-789"))
    result = await call_get_pet(url, {"x-api-key": "callers-guess"})
    assert not result.is_error and api.accepted and not api.rejected


async def test_a_credential_that_cannot_be_had_is_an_error_result_naming_only_the_server(serve, azure):
    entra, _, _, _ = azure
    check = entra_token_check(entra, audience=API, issuer=entra.v1_issuer)
    url, api = serve({"managedIdentity": {"scope": f"{API}/.default", "clientId": "not-assigned-to-this-app"}}, check)
    result = await call_get_pet(url)
    assert result.is_error
    assert result.content[0].text == "server 'shop': the gateway could not obtain the backend credential"
    assert not api.accepted and not api.rejected  # nothing was sent without its credential
