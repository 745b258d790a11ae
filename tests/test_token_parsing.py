"""Token input never gets a 500: every malformed header or claim is a 4xx, and Entra takes RS256 only."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.recorder import RecordingBackend
from helpers import gateway_config
from shared.config.inbound import EntraAuth, JwtAuth, TokenRules
from shared.errors import Forbidden, Unauthorized
from shared.httpclient import https_client
from shared.inbound.jwks import JwksCache
from shared.inbound.permissions import check_permissions
from shared.inbound.tokens import TokenValidator
from test_inbound_tokens import AUDIENCE, CLIENT_APP, call, entra_server


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed(header_json: str, claims_json: str, private_key) -> str:
    """A token with exactly these header and claims texts, validly signed with RS256 by `private_key`."""
    import jwt

    signing_input = f"{_b64(header_json.encode())}.{_b64(claims_json.encode())}".encode()
    signature = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).sign(signing_input, private_key)
    return f"{signing_input.decode()}.{_b64(signature)}"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


async def test_an_alg_that_is_a_list_or_object_is_a_401_not_a_500(start_server, start_gateway, entra, emulator_pki):
    backend = start_server(RecordingBackend(), lifespan="off")
    base = start_gateway(gateway_config({"api": entra_server(f"{backend.base_url}/mcp", entra)}, caBundle=emulator_pki.ca_path))
    claims = json.dumps({"aud": AUDIENCE, "azp": CLIENT_APP, "tid": entra.tenant_id})
    key = entra.signing_key
    for alg in (["RS256"], {"RS256": 1}, 256, None, True):
        token = signed(json.dumps({"alg": alg, "kid": key.kid}), claims, key.private_key)
        response = await call(f"{base}/mcp/api", token)
        assert response.status_code == 401, (alg, response.text)
        assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


async def test_entra_routes_accept_rs256_only_and_generic_jwt_routes_the_asymmetric_list(start_server, start_gateway, entra, emulator_pki):
    entra.jwks_declare_alg = False  # as Entra publishes its keys: no alg, so the key alone allows any RSA algorithm
    backend = start_server(RecordingBackend(), lifespan="off")
    jwt_settings = {"openidConfigUrl": entra.openid_configuration_url, "audiences": [AUDIENCE], "issuers": [entra.issuer_v2]}
    base = start_gateway(gateway_config({"api": entra_server(f"{backend.base_url}/mcp", entra),
                                         "oidc": {"url": f"{backend.base_url}/mcp", "auth": {"jwt": jwt_settings}}},
                                        caBundle=emulator_pki.ca_path))
    for alg in ("PS256", "RS512", "PS384"):
        token = entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP}, alg=alg)
        refused = await call(f"{base}/mcp/api", token)
        assert refused.status_code == 401 and refused.json()["error"]["message"] == "token algorithm is not accepted", alg
        assert (await call(f"{base}/mcp/oidc", token)).status_code == 200, alg
    assert (await call(f"{base}/mcp/api", entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP}))).status_code == 200


async def test_an_unreachable_idp_with_no_cached_keys_is_a_503_with_retry_after(start_server, start_gateway, entra, emulator_pki):
    backend = start_server(RecordingBackend(), lifespan="off")
    base = start_gateway(gateway_config({"api": entra_server(f"{backend.base_url}/mcp", entra)}, caBundle=emulator_pki.ca_path))
    token = entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP})
    entra.stop()
    try:
        response = await call(f"{base}/mcp/api", token)
    finally:
        entra.start()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == -32006 and response.json()["id"] == 5
    assert int(response.headers["retry-after"]) > 0
    assert entra.authority_host not in response.text and "127.0.0.1" not in response.text


def _run(coroutine):
    """Drive a coroutine that must not wait on I/O (keys are cached) to its end, outside any loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise AssertionError("validation waited on I/O with the keys cached")


@pytest.mark.parametrize("kind", ["entra", "jwt"])
async def test_token_headers_and_claims_of_any_shape_are_refused_cleanly(entra, emulator_pki, kind):
    rules = TokenRules(audiences=(AUDIENCE,), required_scopes=("mcp.tools",), required_roles=("MCP.Invoke",))
    config = (EntraAuth(tenant_id=entra.tenant_id, rules=rules, authority_host=entra.authority_host,
                        client_application_ids=(CLIENT_APP,))
              if kind == "entra" else JwtAuth(openid_config_url=entra.openid_configuration_url, rules=rules))
    client = https_client(emulator_pki.ca_path)
    jwks = JwksCache(config.openid_config_url, lambda: client)
    validator = TokenValidator(config, jwks)
    key = entra.signing_key
    assert await jwks.key(key.kid) is not None  # fetched once, for real; examples then run on the cache
    await client.aclose()
    good = json.loads(base64.urlsafe_b64decode(entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP}).split(".")[1] + "=="))
    headers = st.fixed_dictionaries(
        {"alg": st.sampled_from(["RS256", "PS256", "none", "HS256"]) | json_values,
         "kid": st.just(key.kid) | json_values},
        optional={"typ": json_values, "crit": json_values, "jku": json_values, "x5c": json_values, "b64": json_values},
    )
    claim_names = st.sampled_from(["aud", "iss", "exp", "nbf", "iat", "tid", "ver", "azp", "appid", "oid", "sub", "scp", "roles"])
    claims = st.dictionaries(claim_names, json_values, max_size=6).map(lambda changed: {**good, **changed})

    @settings(max_examples=200, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(header=headers, body=claims, raw_tail=st.sampled_from(["", ".", "x"]))
    def example(header, body, raw_tail):
        token = signed(json.dumps(header, allow_nan=True), json.dumps(body, allow_nan=True), key.private_key) + raw_tail
        try:
            caller = _run(validator.validate(token))
        except Unauthorized:
            return
        check = lambda error, description: {}  # noqa: E731
        try:
            check_permissions(caller, rules, check)
        except Forbidden:
            return
        assert caller.roles or caller.scopes

    example()
