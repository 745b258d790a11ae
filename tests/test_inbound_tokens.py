"""Entra ID tokens at the gateway: good ones reach the backend, bad ones never do."""

from __future__ import annotations

import base64
import json
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from backends.recorder import RecordingBackend
from helpers import gateway_config

AUDIENCE = "api://mcp-gateway"
CLIENT_APP = "11111111-2222-3333-4444-555555555555"
PING = b'{"jsonrpc":"2.0","id":5,"method":"ping"}'
JSON = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def entra_server(url: str, entra, **overrides) -> dict:
    settings = {"tenantId": entra.tenant_id, "audiences": [AUDIENCE], "authorityHost": entra.authority_host,
                "clientApplicationIds": [CLIENT_APP], **overrides}
    return {"url": url, "auth": {"entra": settings}}


@pytest.fixture
def protected(start_server, start_gateway, entra, emulator_pki):
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    base = start_gateway(gateway_config({"api": entra_server(f"{backend.base_url}/mcp", entra,
                                                             requiredClaims=[{"name": "oid"}])},
                                        caBundle=emulator_pki.ca_path))
    return f"{base}/mcp/api", recorder


async def call(url: str, token: str | None, **headers) -> httpx.Response:
    if token is not None:
        headers["authorization"] = f"Bearer {token}".strip()
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(url, content=PING, headers={**JSON, **headers})


@pytest.mark.parametrize("version", [1, 2])
async def test_valid_v1_and_v2_tokens_reach_the_backend_without_the_token(protected, entra, version):
    url, recorder = protected
    token = entra.mint({"aud": AUDIENCE, "azp" if version == 2 else "appid": CLIENT_APP}, version=version)
    response = await call(url, token)
    assert response.status_code == 200, response.text
    assert len(recorder.requests) == 1
    assert "authorization" not in recorder.requests[0].headers
    assert token not in repr(recorder.requests[0].raw_headers)


def _b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def bad_tokens(entra) -> dict[str, tuple[str, int]]:
    """name -> (token, expected status). At least 30 ways to be wrong."""
    good_claims = {"aud": AUDIENCE, "azp": CLIENT_APP}
    good = entra.mint(good_claims)
    header, payload, signature = good.split(".")
    claims = jwt.decode(good, options={"verify_signature": False})
    kid = entra.signing_key.kid
    public_pem = entra.signing_key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attacker_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key()))
    ec_key = ec.generate_private_key(ec.SECP256R1())

    def unsigned(alg: str) -> str:
        return f"{_b64({'alg': alg, 'typ': 'JWT', 'kid': kid})}.{payload}."

    def hs256_with_public_key() -> str:
        signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{payload}".encode()
        import hashlib
        import hmac
        mac = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
        return f"{signing_input.decode()}.{_b64(mac)}"

    def tamper(field: str, value) -> str:
        changed = {**claims, field: value}
        return f"{header}.{_b64(changed)}.{signature}"

    def mint(overrides: dict | None = None, **kwargs) -> str:
        return entra.mint({**good_claims, **(overrides or {})}, **kwargs)

    now = int(time.time())
    return {
        "alg none": (unsigned("none"), 401),
        "alg None": (unsigned("None"), 401),
        "alg nOnE": (unsigned("nOnE"), 401),
        "HS256 signed with the RSA public key": (hs256_with_public_key(), 401),
        "empty signature": (f"{header}.{payload}.", 401),
        "stripped signature": (f"{header}.{payload}", 401),
        "tampered signature": (f"{header}.{payload}.{signature[:-4]}AAAA", 401),
        "tampered payload (aud)": (tamper("aud", "api://other"), 401),
        "tampered payload (oid)": (tamper("oid", str(uuid.uuid4())), 401),
        "signed by an attacker key with our kid": (mint(key=attacker), 401),
        "embedded jwk": (mint(key=attacker, headers={"jwk": attacker_jwk}), 401),
        "jku": (mint(headers={"jku": "https://attacker.example/keys"}), 401),
        "x5u": (mint(headers={"x5u": "https://attacker.example/cert"}), 401),
        "x5c": (mint(headers={"x5c": ["MIIB"]}), 401),
        "kid path traversal": (mint(key=attacker, headers={"kid": "../../../../etc/passwd"}), 401),
        "kid injection": (mint(key=attacker, headers={"kid": "x' OR '1'='1"}), 401),
        "kid not a string": (sign_raw({"alg": "RS256", "typ": "JWT", "kid": 7}, claims, entra.signing_key.private_key), 401),
        "unknown kid": (mint(key=attacker, headers={"kid": "unknown-kid-1"}), 401),
        "unknown crit": (mint(headers={"crit": ["exp-ext"], "exp-ext": 1}), 401),
        "ES256 with an RSA kid": (EntraEmulatorSign(ec_key, kid, claims), 401),
        "expired": (mint({"exp": now - 3600, "nbf": now - 7200, "iat": now - 7200}), 401),
        "future nbf": (mint({"nbf": now + 3600}), 401),
        "missing exp": (mint({"exp": None}), 401),
        "wrong aud": (mint({"aud": "api://someone-else"}), 401),
        "wrong iss": (mint({"iss": "https://login.microsoftonline.com/other-tenant/v2.0"}), 401),
        "v1 issuer with v2 claims": (mint({"iss": entra.v1_issuer}), 401),
        "v2 issuer with ver 1.0": (mint({"ver": "1.0"}), 401),
        "tid mismatch": (mint({"tid": str(uuid.uuid4())}), 401),
        "client app not allowed": (mint({"azp": "99999999-0000-0000-0000-000000000000"}), 401),
        "missing required claim": (mint({"oid": None, "sub": "x"}), 401),
        "JWE-shaped": ("eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d", 401),
        "oversized": (mint({"pad": "x" * 20000}), 401),
        "garbage": ("not-a-token", 401),
        "garbage with dots": ("a.b.c", 401),
        "empty bearer": ("   ", 401),
    }


def sign_raw(header: dict, claims: dict, private_key) -> str:
    """Sign with any header at all (pyjwt refuses some malformed ones)."""
    signing_input = f"{_b64(header)}.{_b64(claims)}".encode()
    signature = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).sign(signing_input, private_key)
    return f"{signing_input.decode()}.{_b64(signature)}"


def EntraEmulatorSign(private_key, kid: str, claims: dict) -> str:
    return jwt.encode(claims, private_key, algorithm="ES256", headers={"kid": kid})


async def test_bad_tokens_are_refused_and_never_reach_the_backend(protected, entra):
    url, recorder = protected
    cases = bad_tokens(entra)
    assert len(cases) >= 30
    outcomes = {}
    for name, (token, expected) in cases.items():
        response = await call(url, token)
        outcomes[name] = response.status_code
        if token and len(token) > 40:
            assert token not in response.text, name
            assert token not in repr(response.headers), name
        assert response.headers.get("www-authenticate", "").startswith("Bearer "), name
    assert outcomes == {name: expected for name, (_, expected) in cases.items()}
    assert recorder.requests == []


async def test_error_bodies_say_what_was_wrong(protected, entra):
    url, _ = protected
    expired = entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP, "exp": int(time.time()) - 600})
    wrong_aud = entra.mint({"aud": "api://elsewhere", "azp": CLIENT_APP})
    assert (await call(url, None)).json()["error"]["message"] == "missing bearer token"
    assert (await call(url, expired)).json()["error"]["message"] == "token has expired"
    assert (await call(url, wrong_aud)).json()["error"]["message"] == "token audience is not accepted"


async def test_missing_scope_is_403_insufficient_scope(start_server, start_gateway, entra, emulator_pki):
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    server = entra_server(f"{backend.base_url}/mcp", entra, requiredScopes=["mcp.tools"])
    base = start_gateway(gateway_config({"api": server}, caBundle=emulator_pki.ca_path))
    without = entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP, "scp": "other"})
    with_scope = entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP, "scp": "other mcp.tools"})
    refused = await call(f"{base}/mcp/api", without)
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert 'scope="mcp.tools"' in refused.headers["www-authenticate"]
    assert recorder.requests == []
    assert (await call(f"{base}/mcp/api", with_scope)).status_code == 200


async def test_app_only_token_needs_a_role(start_server, start_gateway, entra, emulator_pki):
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    server = entra_server(f"{backend.base_url}/mcp", entra, requiredRoles=["MCP.Invoke"])
    base = start_gateway(gateway_config({"api": server}, caBundle=emulator_pki.ca_path))
    no_role = entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP, "roles": ["Other"]})
    role = entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP, "roles": ["MCP.Invoke"]})
    assert (await call(f"{base}/mcp/api", no_role)).status_code == 403
    assert (await call(f"{base}/mcp/api", role)).status_code == 200


async def test_flood_of_unknown_kids_causes_at_most_one_jwks_fetch(protected, entra):
    url, _ = protected
    good = entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP})
    assert (await call(url, good)).status_code == 200  # keys cached
    fetches_before = entra.jwks_fetches
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for _ in range(50):
        forged = entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP}, key=attacker, headers={"kid": uuid.uuid4().hex})
        assert (await call(url, forged)).status_code == 401
    assert entra.jwks_fetches - fetches_before <= 1


async def test_cached_keys_keep_working_while_the_idp_is_down(protected, entra):
    url, _ = protected
    assert (await call(url, entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP}))).status_code == 200
    fresh = entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP, "oid": str(uuid.uuid4())})
    entra.stop()
    try:
        assert (await call(url, fresh)).status_code == 200
    finally:
        entra.start()


async def test_mcp_sdk_client_with_a_bearer_token_end_to_end(start_server, start_gateway, entra, emulator_pki):
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from backends.mcp_servers import build_app

    backend = start_server(build_app("stateful-sse"))
    server = entra_server(f"{backend.base_url}/mcp", entra)
    base = start_gateway(gateway_config({"api": server}, caBundle=emulator_pki.ca_path))
    token = entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP})
    async with httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30) as http:
        async with Client(streamable_http_client(f"{base}/mcp/api", http_client=http), mode="legacy") as client:
            result = await client.call_tool("add", {"a": 1, "b": 2})
    assert result.structured_content == {"result": 3}


@pytest.mark.parametrize(
    ("rules", "claims", "status"),
    [
        # scopes and roles both required: every token needs a role; delegated tokens need every scope too
        ({"requiredScopes": ["mcp.tools"], "requiredRoles": ["MCP.Invoke"]}, {"scp": "mcp.tools"}, 403),
        ({"requiredScopes": ["mcp.tools"], "requiredRoles": ["MCP.Invoke"]}, {"scp": "other", "roles": ["MCP.Invoke"]}, 403),
        ({"requiredScopes": ["mcp.tools"], "requiredRoles": ["MCP.Invoke"]}, {"scp": "mcp.tools", "roles": ["MCP.Invoke"]}, 200),
        ({"requiredScopes": ["mcp.tools"], "requiredRoles": ["MCP.Invoke"]}, {"roles": ["MCP.Invoke"]}, 200),
        ({"requiredScopes": ["mcp.tools"], "requiredRoles": ["MCP.Invoke"]}, {"roles": ["Other"]}, 403),
        # scopes only: an app-only token cannot hold a scope, so it cannot pass
        ({"requiredScopes": ["mcp.tools"]}, {"roles": ["MCP.Invoke"]}, 403),
        ({"requiredScopes": ["mcp.tools", "mcp.read"]}, {"scp": "mcp.read mcp.tools"}, 200),
        ({"requiredScopes": ["mcp.tools", "mcp.read"]}, {"scp": "mcp.tools"}, 403),
        # Entra writes the short name into scp; the full name's prefix must be one of the server's audiences
        ({"requiredScopes": [f"{AUDIENCE}/mcp.access"]}, {"scp": "mcp.access"}, 200),
        ({"requiredScopes": [f"{AUDIENCE}/mcp.access"]}, {"scp": f"{AUDIENCE}/mcp.access"}, 200),
        ({"requiredScopes": ["api://another-api/mcp.access"]}, {"scp": "mcp.access"}, 403),
        ({"requiredScopes": [f"{AUDIENCE}/mcp.access"]}, {"scp": "other.access"}, 403),
        # roles only: delegated or app-only, a role is needed
        ({"requiredRoles": ["MCP.Invoke", "MCP.Admin"]}, {"scp": "mcp.tools"}, 403),
        ({"requiredRoles": ["MCP.Invoke", "MCP.Admin"]}, {"scp": "mcp.tools", "roles": ["MCP.Admin"]}, 200),
    ],
)
async def test_required_scopes_and_roles_combine_by_one_rule(start_server, start_gateway, entra, emulator_pki, rules, claims, status):
    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    base = start_gateway(gateway_config({"api": entra_server(f"{backend.base_url}/mcp", entra, **rules)},
                                        caBundle=emulator_pki.ca_path))
    response = await call(f"{base}/mcp/api", entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP, **claims}))
    assert response.status_code == status, response.text
    assert len(recorder.requests) == (1 if status == 200 else 0)
    if status == 403:
        assert response.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
