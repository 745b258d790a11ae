"""The emulators, driven by the real SDKs (msal, azure-identity, azure-keyvault-secrets, pyjwt).

Imports ``emulators`` from ``tests/`` (pytest's default rootdir/prepend import
mode puts this file's directory on sys.path; a ``pythonpath = tests`` setting
works as well).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import jwt
import msal
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from emulators.entra import EntraEmulator, FederatedCredential, SigningKey
from emulators.fixtures import *  # noqa: F403 - fixtures
from emulators.keyvault import KeyVaultEmulator
from emulators.managed_identity import ManagedIdentity, ManagedIdentityEmulator
from emulators.server import BackgroundServer
from emulators.tls import TestPKI

VAULT_SCOPE = "https://vault.azure.net/.default"


@pytest.fixture(autouse=True)
def no_leaked_emulator_threads() -> Iterator[None]:
    yield
    leaked = [t.name for t in threading.enumerate() if t.name.startswith("emulator-")]
    assert leaked == [], f"emulator threads still running: {leaked}"


def jwks_keys(entra: EntraEmulator, session: requests.Session) -> dict[str, jwt.PyJWK]:
    """What a gateway does: discovery document -> jwks_uri -> PyJWK by kid (RSA only)."""
    config = session.get(entra.openid_configuration_url, timeout=5).json()
    jwks = session.get(config["jwks_uri"], timeout=5).json()
    return {k["kid"]: jwt.PyJWK.from_dict(k) for k in jwks["keys"] if k["kty"] == "RSA"}


def verify(token: str, keys: dict[str, jwt.PyJWK], *, audience: str, issuer: str) -> dict[str, object]:
    kid = jwt.get_unverified_header(token)["kid"]
    return jwt.decode(token, keys[kid], algorithms=["RS256"], audience=audience, issuer=issuer)


def confidential_app(
    entra: EntraEmulator, http: requests.Session, client_id: str, credential: object
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=credential,
        authority=entra.authority,
        instance_discovery=False,
        http_client=http,
    )


# -- server / TLS ---------------------------------------------------------------------


def test_background_server_tls_restart_and_refusal(emulator_pki: TestPKI) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(_: object) -> PlainTextResponse:
        return PlainTextResponse("hi")

    app = Starlette(routes=[Route("/", hello)])
    server = BackgroundServer(app, pki=emulator_pki)
    with server:
        port = server.port
        assert port > 0 and server.base_url == f"https://127.0.0.1:{port}"
        with requests.Session() as s:
            s.trust_env, s.verify = False, emulator_pki.ca_path
            assert s.get(server.base_url, timeout=5).text == "hi"
            with pytest.raises(requests.exceptions.SSLError):
                requests.Session().get(server.base_url, timeout=5, verify=True)
    assert not server.running
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    server.start()  # same port again
    try:
        assert server.port == port
        with requests.Session() as s:
            s.trust_env, s.verify = False, emulator_pki.ca_path
            assert s.get(server.base_url, timeout=5).status_code == 200
    finally:
        server.stop()


def test_background_server_lifespan_on() -> None:
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette

    events: list[str] = []

    @asynccontextmanager
    async def lifespan(_: Starlette):  # type: ignore[no-untyped-def]
        events.append("startup")
        yield
        events.append("shutdown")

    with BackgroundServer(Starlette(lifespan=lifespan), lifespan="on") as server:
        assert requests.get(server.base_url, timeout=5).status_code == 404
    assert events == ["startup", "shutdown"]

    @asynccontextmanager
    async def broken(_: Starlette):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")
        yield

    with pytest.raises(RuntimeError, match="failed to start"):
        BackgroundServer(Starlette(lifespan=broken), lifespan="on").start()


# -- Entra: discovery, JWKS, minting ---------------------------------------------------------


def test_discovery_and_minted_tokens_verify_with_pyjwt(
    entra: EntraEmulator, msal_http_client: requests.Session, emulator_pki: TestPKI
) -> None:
    v2 = msal_http_client.get(entra.openid_configuration_url, timeout=5).json()
    assert v2["issuer"] == entra.issuer_v2 == f"{entra.authority_host}/{entra.tenant_id}/v2.0"
    assert v2["token_endpoint"] == entra.token_endpoint
    v1 = msal_http_client.get(f"{entra.authority}/.well-known/openid-configuration", timeout=5).json()
    assert v1["issuer"] == f"https://sts.windows.net/{entra.tenant_id}/"
    alias = msal_http_client.get(f"{entra.authority_host}/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration", timeout=5)
    assert alias.json()["issuer"] == entra.issuer_v2
    assert msal_http_client.get(f"{entra.authority_host}/nope/v2.0/.well-known/openid-configuration", timeout=5).status_code == 400

    keys = jwks_keys(entra, msal_http_client)
    jwk = msal_http_client.get(entra.jwks_uri, timeout=5).json()["keys"][0]
    assert {"kid", "kty", "n", "e", "use"} <= jwk.keys() and jwk["use"] == "sig"

    user = entra.mint({"aud": "api://gateway", "scp": "mcp.call", "oid": "u-1"}, version=2)
    claims = verify(user, keys, audience="api://gateway", issuer=entra.issuer_v2)
    assert claims["ver"] == "2.0" and claims["scp"] == "mcp.call" and claims["oid"] == "u-1"
    assert claims["tid"] == entra.tenant_id and "azp" in claims and claims["exp"] > claims["iat"]

    app = entra.mint({"aud": "api://gateway", "roles": ["Mcp.Invoke"], "appid": "c-1"}, version=1)
    claims = verify(app, keys, audience="api://gateway", issuer=entra.v1_issuer)
    assert claims["ver"] == "1.0" and claims["roles"] == ["Mcp.Invoke"] and "scp" not in claims
    assert claims["appid"] == "c-1" and claims["idtyp"] == "app"

    # pyjwt's own client (blocking urllib) against the emulator's JWKS over TLS
    jwk_client = jwt.PyJWKClient(v2["jwks_uri"], ssl_context=emulator_pki.client_ssl_context(), cache_keys=False)
    assert jwt.decode(
        user, jwk_client.get_signing_key_from_jwt(user).key, algorithms=["RS256"], audience="api://gateway", issuer=entra.issuer_v2
    )["oid"] == "u-1"

    # negative material
    rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = entra.mint({"aud": "api://gateway"}, key=rogue)
    with pytest.raises(jwt.InvalidSignatureError):
        verify(forged, keys, audience="api://gateway", issuer=entra.issuer_v2)
    expired = entra.mint({"aud": "api://gateway"}, lifetime=-120)
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(expired, keys, audience="api://gateway", issuer=entra.issuer_v2)
    unsigned = entra.mint({"aud": "api://gateway"}, alg=None)
    with pytest.raises(jwt.InvalidAlgorithmError):
        verify(unsigned, keys, audience="api://gateway", issuer=entra.issuer_v2)
    no_claim = entra.mint({"aud": "api://gateway", "tid": None})
    assert "tid" not in jwt.decode(no_claim, options={"verify_signature": False})


def test_key_rotation_fetch_counter_and_jwks_failure(entra: EntraEmulator, msal_http_client: requests.Session) -> None:
    old_token = entra.mint({"aud": "api://gateway"})
    old_kid = entra.signing_key.kid
    entra.reset_counters()
    jwks_keys(entra, msal_http_client)
    assert entra.jwks_fetches == 1 and entra.openid_config_fetches == 1

    new_key = entra.rotate_keys(keep_old=True)
    new_token = entra.mint({"aud": "api://gateway"})
    assert jwt.get_unverified_header(new_token)["kid"] == new_key.kid
    keys = jwks_keys(entra, msal_http_client)
    assert set(keys) == {old_kid, new_key.kid}
    verify(old_token, keys, audience="api://gateway", issuer=entra.issuer_v2)
    verify(new_token, keys, audience="api://gateway", issuer=entra.issuer_v2)

    entra.remove_key(old_kid)
    assert set(jwks_keys(entra, msal_http_client)) == {new_key.kid}
    extra = entra.add_key("extra-kid")
    assert entra.signing_key.kid == new_key.kid  # added, not active
    assert jwt.get_unverified_header(entra.mint({"aud": "x"}, kid=extra.kid))["kid"] == "extra-kid"
    assert entra.jwks_fetches == 3

    entra.fail_jwks(500)
    assert msal_http_client.get(entra.jwks_uri, timeout=5).status_code == 500
    entra.fail_jwks(None)
    assert msal_http_client.get(entra.jwks_uri, timeout=5).status_code == 200
    assert entra.jwks_fetches == 5


# -- Entra token endpoint with msal ---------------------------------------------------------


def test_msal_client_secret_client_credentials(entra: EntraEmulator, msal_http_client: requests.Session) -> None:
    client = entra.register_app(secret="s3cret", app_roles={"api://backend": ["Data.Read"]})
    app = confidential_app(entra, msal_http_client, client.client_id, "s3cret")
    result = app.acquire_token_for_client(["api://backend/.default"])
    assert "access_token" in result, result
    again = app.acquire_token_for_client(["api://backend/.default"])  # msal's cache
    assert again["access_token"] == result["access_token"]
    assert entra.token_request_count(grant="client_credentials", client_id=client.client_id, scope="api://backend/.default") == 1

    claims = verify(result["access_token"], jwks_keys(entra, msal_http_client), audience="api://backend", issuer=entra.issuer_v2)
    assert claims["azp"] == client.client_id and claims["roles"] == ["Data.Read"]
    assert claims["oid"] == client.object_id and claims["idtyp"] == "app" and "scp" not in claims

    bad = confidential_app(entra, msal_http_client, client.client_id, "wrong")
    failed = bad.acquire_token_for_client(["api://backend/.default"])
    assert failed["error"] == "invalid_client" and 7000215 in failed["error_codes"]
    no_default = app.acquire_token_for_client(["api://other/read"])
    assert no_default["error"] == "invalid_scope"
    unknown = confidential_app(entra, msal_http_client, str(uuid.uuid4()), "s3cret").acquire_token_for_client(["api://backend/.default"])
    assert unknown["error"] == "unauthorized_client"


def test_registered_api_gets_v2_guid_audience(entra: EntraEmulator, msal_http_client: requests.Session) -> None:
    api = entra.register_app(identifier_uris=["api://backend-v2"], access_token_version=2)
    api_v1 = entra.register_app(identifier_uris=["api://backend-v1"], access_token_version=1)
    client = entra.register_app(secret="pw")
    app = confidential_app(entra, msal_http_client, client.client_id, "pw")
    keys = jwks_keys(entra, msal_http_client)
    v2 = app.acquire_token_for_client(["api://backend-v2/.default"])["access_token"]
    assert verify(v2, keys, audience=api.client_id, issuer=entra.issuer_v2)["ver"] == "2.0"
    v1 = app.acquire_token_for_client(["api://backend-v1/.default"])["access_token"]
    claims = verify(v1, keys, audience="api://backend-v1", issuer=entra.v1_issuer)
    assert claims["ver"] == "1.0" and claims["appid"] == client.client_id
    assert api_v1.client_id != api.client_id


@pytest.mark.parametrize("mode", ["thumbprint", "public_certificate"])
def test_msal_certificate_credential(entra: EntraEmulator, emulator_pki: TestPKI, msal_http_client: requests.Session, mode: str) -> None:
    cert = emulator_pki.issue_client_certificate("gateway-app")
    client = entra.register_app(certificate=cert)
    credential: dict[str, str] = {"private_key": cert.private_key_pem}
    if mode == "thumbprint":
        credential["thumbprint"] = cert.sha1_thumbprint  # RS256 + x5t
    else:
        credential["public_certificate"] = cert.certificate_pem  # PS256 + x5t#S256 + x5c
    app = confidential_app(entra, msal_http_client, client.client_id, credential)
    result = app.acquire_token_for_client(["api://backend/.default"])
    assert "access_token" in result, result
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["azpacr"] == "2"

    other = emulator_pki.issue_client_certificate("not-registered")
    rogue = confidential_app(
        entra, msal_http_client, client.client_id, {"private_key": other.private_key_pem, "thumbprint": other.sha1_thumbprint}
    )
    failed = rogue.acquire_token_for_client(["api://backend/.default"])
    assert failed["error"] == "invalid_client" and 700027 in failed["error_codes"]
    # registered thumbprint but signed by another key
    forged = confidential_app(
        entra, msal_http_client, client.client_id, {"private_key": other.private_key_pem, "thumbprint": cert.sha1_thumbprint}
    )
    failed = forged.acquire_token_for_client(["api://backend/.default"])
    assert failed["error"] == "invalid_client" and 700027 in failed["error_codes"]


def test_msal_client_assertion_callable_federated(entra: EntraEmulator, msal_http_client: requests.Session) -> None:
    issuer_key = SigningKey.generate("fic-key")
    issuer = "https://token.actions.example"
    client = entra.register_app(
        federated=FederatedCredential(issuer=issuer, subject="repo:contoso/gw", jwks={"keys": [issuer_key.jwk()]})
    )
    calls: list[int] = []

    def assertion(subject: str = "repo:contoso/gw", key: rsa.RSAPrivateKey = issuer_key.private_key) -> str:
        calls.append(1)
        now = int(time.time())
        return EntraEmulator.sign(
            {"iss": issuer, "sub": subject, "aud": "api://AzureADTokenExchange", "iat": now, "exp": now + 300},
            key,
            headers={"kid": "fic-key"},
        )

    app = confidential_app(entra, msal_http_client, client.client_id, {"client_assertion": assertion})
    result = app.acquire_token_for_client(["api://backend/.default"])
    assert "access_token" in result, result
    assert calls, "msal did not call the assertion callable"

    wrong_sub = confidential_app(entra, msal_http_client, client.client_id, {"client_assertion": lambda: assertion("repo:evil/x")})
    assert wrong_sub.acquire_token_for_client(["api://backend/.default"])["error"] == "invalid_request"
    rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = confidential_app(entra, msal_http_client, client.client_id, {"client_assertion": lambda: assertion(key=rogue)})
    assert forged.acquire_token_for_client(["api://backend/.default"])["error"] == "invalid_client"


def test_managed_identity_token_as_federated_credential(
    entra: EntraEmulator, managed_identity: ManagedIdentityEmulator, msal_http_client: requests.Session
) -> None:
    """The Functions pattern: MI token (aud api://AzureADTokenExchange) as the app's client assertion."""
    mi = managed_identity.system_identity
    client = entra.register_app(
        federated=FederatedCredential(issuer=entra.v1_issuer, subject=mi.object_id, jwks=entra.jwks)
    )

    def mi_assertion() -> str:
        r = requests.get(
            managed_identity.endpoint,
            params={"api-version": "2019-08-01", "resource": "api://AzureADTokenExchange"},
            headers={"X-IDENTITY-HEADER": managed_identity.secret},
            timeout=5,
        )
        return str(r.json()["access_token"])

    app = confidential_app(entra, msal_http_client, client.client_id, {"client_assertion": mi_assertion})
    assert "access_token" in app.acquire_token_for_client(["api://backend/.default"])


def test_msal_on_behalf_of(entra: EntraEmulator, msal_http_client: requests.Session) -> None:
    gateway = entra.register_app(secret="gw", delegated_scopes={"api://backend": ["Files.Read"]})
    app = confidential_app(entra, msal_http_client, gateway.client_id, "gw")
    user_token = entra.mint({"aud": gateway.client_id, "oid": "user-42", "scp": "access_as_user"})
    result = app.acquire_token_on_behalf_of(user_token, ["api://backend/.default"])
    assert "access_token" in result, result
    assert "refresh_token" in result and "id_token_claims" in result
    claims = verify(result["access_token"], jwks_keys(entra, msal_http_client), audience="api://backend", issuer=entra.issuer_v2)
    assert claims["oid"] == "user-42" and claims["sub"] == "user-42"
    assert claims["scp"] == "Files.Read" and claims["azp"] == gateway.client_id
    assert entra.token_request_count(grant="on_behalf_of", client_id=gateway.client_id, scope="api://backend/.default", user="user-42") == 1

    # identifier-URI audience is accepted too; explicit scopes are carried
    uri_token = entra.mint({"aud": f"api://{gateway.client_id}", "oid": "user-43"}, version=1)
    explicit = app.acquire_token_on_behalf_of(uri_token, ["api://backend/Files.Read", "api://backend/Files.Write"])
    assert jwt.decode(explicit["access_token"], options={"verify_signature": False})["scp"] == "Files.Read Files.Write"

    # a token for another audience / an app-only token / an expired one are refused
    for bad in (
        entra.mint({"aud": "api://someone-else"}),
        entra.mint({"aud": gateway.client_id, "roles": ["x"]}),
        entra.mint({"aud": gateway.client_id}, lifetime=-600),
    ):
        refused = app.acquire_token_on_behalf_of(bad, ["api://backend/.default"])
        assert refused["error"] == "invalid_grant", refused
    assert entra.token_request_count(grant="on_behalf_of", succeeded=False) == 3


def test_msal_faults_429_500_and_down(entra: EntraEmulator, msal_http_client: requests.Session) -> None:
    client = entra.register_app(secret="pw")
    app = confidential_app(entra, msal_http_client, client.client_id, "pw")  # discovery happens here
    entra.faults.fail_next(1, status=429, retry_after=0, path_prefix=entra.token_path_prefix)
    throttled = app.acquire_token_for_client(["api://a/.default"])
    assert throttled["error"] == "temporarily_unavailable"
    entra.faults.fail_next(1, status=500, path_prefix=entra.token_path_prefix)
    with pytest.raises(msal.exceptions.MsalServiceError):  # msal raises on 5xx, returns JSON on 4xx
        app.acquire_token_for_client(["api://b/.default"])
    assert entra.requests.count(path=f"/{entra.tenant_id}/oauth2/v2.0/token") == 2
    assert entra.token_request_count() == 0  # injected faults never reach the handler
    assert "access_token" in app.acquire_token_for_client(["api://c/.default"])

    entra.stop()
    try:
        with pytest.raises(requests.exceptions.ConnectionError):
            app.acquire_token_for_client(["api://d/.default"])
    finally:
        entra.start()
    assert "access_token" in app.acquire_token_for_client(["api://d/.default"])


# -- Managed identity with azure-identity -------------------------------------------------------


@pytest.mark.asyncio
async def test_async_managed_identity_credential(managed_identity_env: ManagedIdentityEmulator, entra: EntraEmulator) -> None:
    from azure.identity.aio import ManagedIdentityCredential

    mi = managed_identity_env
    async with ManagedIdentityCredential() as credential:
        first = await credential.get_token(VAULT_SCOPE)
        second = await credential.get_token(VAULT_SCOPE)
    assert first.token == second.token
    assert mi.token_request_count(resource="https://vault.azure.net") == 1
    assert first.expires_on > time.time() + 3600
    claims = entra.validate(first.token, audiences=["https://vault.azure.net"])
    assert claims["oid"] == mi.system_identity.object_id and claims["appid"] == mi.system_identity.client_id
    assert claims["ver"] == "1.0" and claims["iss"] == entra.v1_issuer

    user_assigned = mi.add_user_assigned(ManagedIdentity(app_roles={"api://backend": ["Mcp.Invoke"]}))
    async with ManagedIdentityCredential(client_id=user_assigned.client_id) as credential:
        token = await credential.get_token("api://backend/.default")
    claims = entra.validate(token.token, audiences=["api://backend"])
    assert claims["appid"] == user_assigned.client_id and claims["roles"] == ["Mcp.Invoke"]
    assert mi.token_request_count(identity=user_assigned.client_id) == 1


@pytest.mark.asyncio
async def test_async_managed_identity_faults(managed_identity_env: ManagedIdentityEmulator) -> None:
    from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
    from azure.identity.aio import ManagedIdentityCredential

    mi = managed_identity_env
    # azure-core's retry policy retries 500/429 (Retry-After honoured)
    mi.faults.fail_next(1, status=500)
    mi.faults.fail_next(1, status=429, retry_after=0)
    async with ManagedIdentityCredential(retry_backoff_factor=0) as credential:
        await credential.get_token("api://x/.default")
    assert mi.requests.count(path="/msi/token") == 3 and mi.token_request_count() == 1

    async with ManagedIdentityCredential(retry_total=0) as credential:
        mi.faults.fail_next(1, status=500)
        with pytest.raises(ClientAuthenticationError):
            await credential.get_token("api://y/.default")

    async with ManagedIdentityCredential(client_id="unknown-client", retry_total=0) as credential:
        with pytest.raises(ClientAuthenticationError, match="No managed identity found"):
            await credential.get_token("api://z/.default")

    mi.stop()
    try:
        async with ManagedIdentityCredential(retry_total=0) as credential:
            with pytest.raises(ServiceRequestError):
                await credential.get_token("api://w/.default")
    finally:
        mi.start()

    assert requests.get(mi.endpoint, params={"api-version": "2019-08-01", "resource": "r"}, timeout=5).status_code == 401


def test_sync_managed_identity_credential(managed_identity_env: ManagedIdentityEmulator, entra: EntraEmulator) -> None:
    from azure.identity import ManagedIdentityCredential

    with ManagedIdentityCredential() as credential:
        token = credential.get_token("api://backend/.default")
        again = credential.get_token("api://backend/.default")
    assert token.token == again.token and managed_identity_env.token_request_count() == 1
    claims = entra.validate(token.token, audiences=["api://backend"])
    assert claims["oid"] == managed_identity_env.system_identity.object_id
    assert abs(token.expires_on - (time.time() + managed_identity_env.token_lifetime)) < 60


# -- Key Vault with azure-keyvault-secrets ------------------------------------------------------


@pytest.mark.asyncio
async def test_key_vault_secret_client(
    key_vault: KeyVaultEmulator, managed_identity_env: ManagedIdentityEmulator, emulator_pki: TestPKI
) -> None:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.identity.aio import ManagedIdentityCredential
    from azure.keyvault.secrets.aio import SecretClient

    first = key_vault.set_secret("backend-key", "v1-value")
    async with ManagedIdentityCredential() as credential, SecretClient(
        key_vault.vault_url, credential, verify_challenge_resource=False, connection_verify=emulator_pki.ca_path
    ) as client:
        secret = await client.get_secret("backend-key")
        assert secret.value == "v1-value" and secret.properties.version == first.version
        assert secret.id == f"{key_vault.vault_url}/secrets/backend-key/{first.version}"

        second = key_vault.set_secret("backend-key", "v2-value")  # rotation
        assert (await client.get_secret("backend-key")).value == "v2-value"
        assert (await client.get_secret("backend-key", first.version)).value == "v1-value"
        assert second.version != first.version

        with pytest.raises(ResourceNotFoundError) as missing:
            await client.get_secret("nope")
        assert missing.value.error is not None and missing.value.error.code == "SecretNotFound"

        written = await client.set_secret("new-secret", "from-sdk")
        assert (await client.get_secret("new-secret")).value == "from-sdk" and written.value == "from-sdk"

    # one challenge round trip (401) then authorized calls; the MI was asked once
    assert key_vault.get_count("backend-key") == 3
    assert key_vault.requests.count(method="GET", path="/secrets/backend-key/") >= 2
    assert managed_identity_env.token_request_count(resource="https://vault.azure.net") == 1
    assert [r.status for r in key_vault.secret_requests][0] == 401


def test_key_vault_wire_errors(key_vault: KeyVaultEmulator, entra: EntraEmulator, emulator_pki: TestPKI) -> None:
    key_vault.set_secret("s", "v")
    with requests.Session() as s:
        s.trust_env, s.verify = False, emulator_pki.ca_path
        url = f"{key_vault.vault_url}/secrets/s?api-version=7.6"
        anonymous = s.get(url, timeout=5)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"] == (
            f'Bearer authorization="{entra.authority}", resource="https://vault.azure.net"'
        )
        assert anonymous.json()["error"]["code"] == "Unauthorized"

        good = entra.mint({"aud": "https://vault.azure.net", "roles": ["x"]}, version=1)
        assert s.get(url, headers={"Authorization": f"Bearer {good}"}, timeout=5).json()["value"] == "v"
        wrong_aud = entra.mint({"aud": "https://management.azure.com"}, version=1)
        assert s.get(url, headers={"Authorization": f"Bearer {wrong_aud}"}, timeout=5).status_code == 401
        rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = entra.mint({"aud": "https://vault.azure.net"}, key=rogue)
        assert s.get(url, headers={"Authorization": f"Bearer {forged}"}, timeout=5).status_code == 401
        assert s.get(f"{key_vault.vault_url}/secrets/s", headers={"Authorization": f"Bearer {good}"}, timeout=5).status_code == 400

        key_vault.allowed_principals = {"someone-else"}
        forbidden = s.get(url, headers={"Authorization": f"Bearer {good}"}, timeout=5)
        assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "Forbidden"
        key_vault.allowed_principals = None

        key_vault.faults.fail_next(1, status=429, retry_after=3)
        throttled = s.get(url, headers={"Authorization": f"Bearer {good}"}, timeout=5)
        assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
