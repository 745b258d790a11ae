"""Generic OpenID Connect tokens (validate-jwt parity), with the Entra emulator as the IdP."""

from __future__ import annotations

import time

import pytest

from backends.recorder import RecordingBackend
from helpers import gateway_config
from test_inbound_tokens import call


@pytest.fixture
def oidc(start_server, start_gateway, entra, emulator_pki):
    def start(**jwt_settings):
        recorder = RecordingBackend()
        backend = start_server(recorder, lifespan="off")
        settings = {"openidConfigUrl": entra.openid_configuration_url, "audiences": ["mcp-gateway"], **jwt_settings}
        base = start_gateway(gateway_config({"api": {"url": f"{backend.base_url}/mcp", "auth": {"jwt": settings}}},
                                            caBundle=emulator_pki.ca_path))
        return f"{base}/mcp/api", recorder

    return start


async def test_issuer_defaults_to_the_discovered_one(oidc, entra):
    url, recorder = oidc()
    assert (await call(url, entra.mint({"aud": "mcp-gateway"}))).status_code == 200
    other = entra.mint({"aud": "mcp-gateway", "iss": "https://idp.example.com"})
    assert (await call(url, other)).status_code == 401
    assert len(recorder.requests) == 1


async def test_configured_issuers_audiences_and_claims(oidc, entra):
    url, recorder = oidc(issuers=[entra.issuer_v2],
                         requiredClaims=[{"name": "scp", "values": ["mcp", "read"], "match": "all", "separator": " "}])
    assert (await call(url, entra.mint({"aud": "mcp-gateway", "scp": "read mcp write"}))).status_code == 200
    assert (await call(url, entra.mint({"aud": "mcp-gateway", "scp": "read"}))).status_code == 401
    assert (await call(url, entra.mint({"aud": "other", "scp": "read mcp"}))).status_code == 401


async def test_clock_skew_and_required_expiration(oidc, entra):
    url, _ = oidc(clockSkewSeconds=120, requireExpirationTime=False)
    now = int(time.time())
    assert (await call(url, entra.mint({"aud": "mcp-gateway", "exp": now - 60}))).status_code == 200
    assert (await call(url, entra.mint({"aud": "mcp-gateway", "exp": now - 600}))).status_code == 401
    assert (await call(url, entra.mint({"aud": "mcp-gateway", "exp": None}))).status_code == 200


async def test_expiration_is_required_by_default(oidc, entra):
    url, _ = oidc()
    response = await call(url, entra.mint({"aud": "mcp-gateway", "exp": None}))
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "token is missing required claim 'exp'"
