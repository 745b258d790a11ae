"""Entra ID (Microsoft identity platform) emulator over HTTPS.

Why: the gateway validates Entra access tokens (JWKS discovery, key rotation,
v1/v2 issuers) and acquires tokens itself (client credentials, on-behalf-of).
This emulator speaks the same wire protocol as login.microsoftonline.com so
the real ``msal`` and ``azure-identity`` code paths run unchanged.

Endpoints (``{tenant}`` is the tenant id or a registered alias):

* ``GET /{tenant}/v2.0/.well-known/openid-configuration`` (what msal fetches)
* ``GET /{tenant}/.well-known/openid-configuration`` (v1 metadata)
* ``GET /{tenant}/discovery/v2.0/keys`` and ``/{tenant}/discovery/keys`` (JWKS)
* ``GET /{tenant}/oauth2/v2.0/authorize``: the authorization code flow with a
  scripted user (``EntraEmulator.user``, who signs in at once, or declines when
  ``user_declines``): registered redirect URIs only, PKCE (``S256`` or ``plain``,
  as Entra), and Entra's refusal of the RFC 8707 ``resource`` parameter sent with
  v2 scopes (AADSTS9010010).
* ``POST /{tenant}/oauth2/v2.0/token``: ``client_credentials``, on-behalf-of
  (``jwt-bearer`` + ``requested_token_use=on_behalf_of``), ``authorization_code``
  (single use, same client and redirect URI, PKCE verifier) and ``refresh_token``
  (for refresh tokens this emulator issued; rotated on use, as Entra does).

Issuers: v2 tokens carry ``{authority_host}/{tid}/v2.0`` (the real service uses
``https://login.microsoftonline.com/{tid}/v2.0``; here the host is the
emulator's own).  v1 tokens carry ``v1_issuer`` which defaults to the real
``https://sts.windows.net/{tid}/`` form: nothing fetches from it, it only has to
match what the validator is configured to accept.

Audience of issued tokens: for an API registered with ``register_api`` the
Entra rules apply (v2 token -> ``aud`` is the API's app id GUID, v1 token ->
``aud`` is the resource as requested).  For an unregistered resource (e.g.
``api://x`` or ``https://vault.azure.net``) the token is minted with
``default_access_token_version`` and ``aud`` equal to the requested resource,
i.e. ``api://x/.default`` -> ``aud == "api://x"``.

Not emulated: device/ROPC grants, conditional access, consent (every requested
delegated scope is granted), a sign-in page (the scripted user answers at once),
token encryption, PoP.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from emulators.faults import FaultAndLogMiddleware, FaultInjector, RequestLog
from emulators.server import BackgroundServer
from emulators.tls import ClientCertificate, TestPKI

CLIENT_ASSERTION_TYPE_JWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})

DEFAULT_USER_OID = "00000000-0000-0000-0000-00000000a11c"
DEFAULT_CLIENT_ID = "00000000-0000-0000-0000-0000000c11e7"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_uint(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _thumbprint_bytes(header_value: str) -> bytes | None:
    """Decode an ``x5t`` / ``x5t#S256`` header (base64url, padding optional)."""
    try:
        return base64.urlsafe_b64decode(header_value + "=" * (-len(header_value) % 4))
    except (binascii.Error, ValueError):
        return None


@dataclass
class SigningKey:
    """One RSA signing key, published in the JWKS under ``kid``."""

    kid: str
    private_key: RSAPrivateKey

    @classmethod
    def generate(cls, kid: str | None = None) -> "SigningKey":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(kid or _b64url(uuid.uuid4().bytes), key)

    @property
    def public_key(self) -> RSAPublicKey:
        return self.private_key.public_key()

    def jwk(self, *, declare_alg: bool = True) -> dict[str, str]:
        numbers = self.public_key.public_numbers()
        jwk = {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }
        return {**jwk, "alg": "RS256"} if declare_alg else jwk


@dataclass
class FederatedCredential:
    """A federated identity credential on an app registration.

    ``jwks`` is the issuer's key set (a dict, or a callable returning one so that
    key rotation at the issuer is seen).  The presented assertion must have
    ``iss == issuer``, ``sub == subject`` and an ``aud`` in ``audiences``.
    """

    issuer: str
    subject: str
    jwks: Mapping[str, Any] | Callable[[], Mapping[str, Any]]
    audiences: tuple[str, ...] = (TOKEN_EXCHANGE_AUDIENCE,)

    def keys(self) -> Mapping[str, Any]:
        return self.jwks() if callable(self.jwks) else self.jwks


@dataclass
class RegisteredApp:
    """An app registration + service principal in the emulated tenant."""

    client_id: str
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    secrets: set[str] = field(default_factory=set)
    certificates: list[x509.Certificate] = field(default_factory=list)
    federated_credentials: list[FederatedCredential] = field(default_factory=list)
    identifier_uris: list[str] = field(default_factory=list)
    access_token_version: int | None = None  # as an API: accessTokenAcceptedVersion
    # Granted permissions of this app (as a client) per resource: app roles for
    # client_credentials, delegated scopes used for ".default" in OBO.
    app_roles: dict[str, list[str]] = field(default_factory=dict)
    delegated_scopes: dict[str, list[str]] = field(default_factory=dict)
    display_name: str = ""
    redirect_uris: list[str] = field(default_factory=list)  # web redirect URIs, matched exactly

    def __post_init__(self) -> None:
        if not self.identifier_uris:
            self.identifier_uris = [f"api://{self.client_id}"]

    def add_certificate(self, certificate: x509.Certificate | ClientCertificate | str) -> None:
        if isinstance(certificate, ClientCertificate):
            certificate = certificate.certificate
        elif isinstance(certificate, str):
            certificate = x509.load_pem_x509_certificate(certificate.encode())
        self.certificates.append(certificate)

    def certificate_for(self, header: Mapping[str, Any]) -> x509.Certificate | None:
        for name, algorithm in (("x5t#S256", "sha256"), ("x5t", "sha1")):
            value = header.get(name)
            if not isinstance(value, str):
                continue
            wanted = _thumbprint_bytes(value)
            for cert in self.certificates:
                der = cert.public_bytes(serialization.Encoding.DER)
                if hashlib.new(algorithm, der).digest() == wanted:
                    return cert
        return None


@dataclass(frozen=True)
class AuthorizeRequest:
    """One request that reached /authorize, as the browser sent it."""

    client_id: str | None
    redirect_uri: str | None
    scope: str
    params: dict[str, str]
    outcome: str  # "code", or the error sent back / shown


@dataclass
class _IssuedCode:
    client_id: str
    redirect_uri: str
    challenge: str | None
    method: str
    scopes: list[str]
    user: dict[str, Any]
    expires_at: float


@dataclass(frozen=True)
class TokenRequest:
    """One token request that reached the token endpoint's handler."""

    grant: str  # client_credentials | on_behalf_of | refresh_token | <raw grant_type>
    client_id: str | None
    scope: str  # resource scopes only (OIDC scopes dropped), sorted, space separated
    user: str | None  # oid of the user for OBO / refresh
    status: int
    error: str | None


class OAuthError(Exception):
    """An OAuth2 error response in Entra's JSON shape."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.code, self.description = status, error, code, description

    def body(self) -> dict[str, Any]:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        trace = str(uuid.uuid4())
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.description} Trace ID: {trace} Timestamp: {now}",
            "error_codes": [self.code],
            "timestamp": now,
            "trace_id": trace,
            "correlation_id": str(uuid.uuid4()),
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


class EntraEmulator:
    """The emulated tenant: keys, app registrations, endpoints and counters."""

    def __init__(
        self,
        pki: TestPKI,
        *,
        tenant_id: str | None = None,
        tenant_aliases: Iterable[str] = ("contoso.onmicrosoft.com",),
        v1_issuer: str | None = None,
        token_lifetime: int = 3600,
        default_access_token_version: int = 2,
    ) -> None:
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.tenant_aliases = {a.lower() for a in tenant_aliases}
        self.v1_issuer = v1_issuer or f"https://sts.windows.net/{self.tenant_id}/"
        self.token_lifetime = token_lifetime
        self.default_access_token_version = default_access_token_version
        self._lock = threading.RLock()
        self._keys: list[SigningKey] = [SigningKey.generate()]  # index 0 signs
        self._apps: dict[str, RegisteredApp] = {}
        self._refresh_tokens: dict[str, tuple[str, dict[str, Any]]] = {}
        self._token_requests: list[TokenRequest] = []
        self._codes: dict[str, _IssuedCode] = {}
        self.authorize_requests: list[AuthorizeRequest] = []
        self.user: dict[str, Any] = {
            "oid": DEFAULT_USER_OID,
            "sub": DEFAULT_USER_OID,
            "name": "Emulated User",
            "preferred_username": "user@contoso.onmicrosoft.com",
        }
        """The scripted user: who signs in at /authorize (claims carried into tokens)."""
        self.user_declines = False
        """The scripted user cancels the sign-in (Entra answers access_denied)."""
        self.jwks_fetches = 0
        self.openid_config_fetches = 0
        self.jwks_failure_status: int | None = None
        self.jwks_declare_alg = True
        """Entra's own key set names no `alg`; set False to publish keys as Entra does."""
        self.faults = FaultInjector(
            lambda status: OAuthError(status, "temporarily_unavailable", 50196, "Injected fault.").body()
        )
        self.requests = RequestLog()
        self.app = Starlette(
            routes=[
                Route("/{tenant}/v2.0/.well-known/openid-configuration", self._openid_v2, methods=["GET"]),
                Route("/{tenant}/.well-known/openid-configuration", self._openid_v1, methods=["GET"]),
                Route("/{tenant}/discovery/v2.0/keys", self._jwks, methods=["GET"]),
                Route("/{tenant}/discovery/keys", self._jwks, methods=["GET"]),
                Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"]),
                Route("/{tenant}/oauth2/v2.0/authorize", self._authorize, methods=["GET"]),
            ],
            middleware=[Middleware(FaultAndLogMiddleware, faults=self.faults, log=self.requests)],
        )
        self.server = BackgroundServer(self.app, pki=pki)

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> "EntraEmulator":
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop listening: clients now get "connection refused"; ``start()`` rebinds the same port."""
        self.server.stop()

    def __enter__(self) -> "EntraEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------
    @property
    def authority_host(self) -> str:
        return self.server.base_url

    @property
    def authority(self) -> str:
        """What to pass as msal's ``authority=``."""
        return f"{self.authority_host}/{self.tenant_id}"

    @property
    def issuer_v2(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}/v2.0"

    @property
    def issuers(self) -> list[str]:
        return [self.v1_issuer, self.issuer_v2]

    @property
    def token_endpoint(self) -> str:
        return f"{self.authority}/oauth2/v2.0/token"

    @property
    def authorize_endpoint(self) -> str:
        return f"{self.authority}/oauth2/v2.0/authorize"

    @property
    def jwks_uri(self) -> str:
        return f"{self.authority}/discovery/v2.0/keys"

    @property
    def openid_configuration_url(self) -> str:
        return f"{self.authority}/v2.0/.well-known/openid-configuration"

    @property
    def token_path_prefix(self) -> str:
        """For ``faults.fail_next(path_prefix=...)`` to hit only the token endpoint."""
        return f"/{self.tenant_id}/oauth2/"

    # -- keys ----------------------------------------------------------------
    @property
    def signing_key(self) -> SigningKey:
        with self._lock:
            return self._keys[0]

    @property
    def keys(self) -> list[SigningKey]:
        with self._lock:
            return list(self._keys)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        with self._lock:
            return {"keys": [k.jwk(declare_alg=self.jwks_declare_alg) for k in self._keys]}

    def add_key(self, kid: str | None = None, *, activate: bool = False) -> SigningKey:
        """Publish a new key; with ``activate`` it also becomes the signing key."""
        key = SigningKey.generate(kid)
        with self._lock:
            if activate:
                self._keys.insert(0, key)
            else:
                self._keys.append(key)
        return key

    def remove_key(self, kid: str) -> None:
        with self._lock:
            remaining = [k for k in self._keys if k.kid != kid]
            if not remaining:
                raise ValueError("cannot remove the last signing key")
            self._keys = remaining

    def rotate_keys(self, *, keep_old: bool = False) -> SigningKey:
        """New signing key; old keys are unpublished unless ``keep_old``."""
        key = SigningKey.generate()
        with self._lock:
            self._keys = [key, *self._keys] if keep_old else [key]
        return key

    # -- registrations -------------------------------------------------------
    def register_app(
        self,
        client_id: str | None = None,
        *,
        secret: str | None = None,
        certificate: x509.Certificate | ClientCertificate | str | None = None,
        federated: FederatedCredential | None = None,
        identifier_uris: list[str] | None = None,
        access_token_version: int | None = None,
        app_roles: dict[str, list[str]] | None = None,
        delegated_scopes: dict[str, list[str]] | None = None,
        display_name: str = "",
        redirect_uris: list[str] | None = None,
    ) -> RegisteredApp:
        app = RegisteredApp(
            client_id=client_id or str(uuid.uuid4()),
            identifier_uris=list(identifier_uris or []),
            access_token_version=access_token_version,
            app_roles=dict(app_roles or {}),
            delegated_scopes=dict(delegated_scopes or {}),
            display_name=display_name,
            redirect_uris=list(redirect_uris or []),
        )
        if secret:
            app.secrets.add(secret)
        if certificate is not None:
            app.add_certificate(certificate)
        if federated is not None:
            app.federated_credentials.append(federated)
        with self._lock:
            self._apps[app.client_id] = app
        return app

    def app_for(self, client_id: str) -> RegisteredApp | None:
        with self._lock:
            return self._apps.get(client_id)

    def _api_for_resource(self, resource: str) -> RegisteredApp | None:
        with self._lock:
            for app in self._apps.values():
                if resource == app.client_id or resource in app.identifier_uris:
                    return app
        return None

    # -- minting -------------------------------------------------------------
    def mint(
        self,
        claims: Mapping[str, Any],
        *,
        version: int = 2,
        kid: str | None = None,
        alg: str | None = "RS256",
        headers: Mapping[str, Any] | None = None,
        key: Any = None,
        lifetime: int | None = None,
    ) -> str:
        """Mint an Entra-shaped access token (user token unless ``roles`` given).

        ``claims`` must contain ``aud`` and override the defaults; a claim set to
        ``None`` is removed.  ``kid`` picks a published key; ``key`` signs with
        any other private key (negative tests) while still using ``kid`` (or the
        active kid) in the header.  ``alg=None`` produces an unsigned ``none`` token.
        """
        if "aud" not in claims:
            raise ValueError("mint() needs an 'aud' claim")
        now = int(time.time())
        exp = now + (self.token_lifetime if lifetime is None else lifetime)
        app_only = "roles" in claims and "scp" not in claims
        oid = str(claims.get("oid") or DEFAULT_USER_OID)
        client = str(claims.get("azp") or claims.get("appid") or DEFAULT_CLIENT_ID)
        base: dict[str, Any] = {
            "iat": now,
            "nbf": now,
            "exp": exp,
            "tid": self.tenant_id,
            "oid": oid,
            "sub": oid,
            "uti": _b64url(uuid.uuid4().bytes[:12]),
        }
        if not app_only:
            base["scp"] = "access_as_user"
            base["name"] = "Emulated User"
        else:
            base["idtyp"] = "app"
        if version == 2:
            base.update({"iss": self.issuer_v2, "ver": "2.0", "azp": client, "azpacr": "0"})
            if not app_only:
                base["preferred_username"] = "user@contoso.onmicrosoft.com"
        elif version == 1:
            base.update({"iss": self.v1_issuer, "ver": "1.0", "appid": client, "appidacr": "0"})
            if not app_only:
                base["upn"] = base["unique_name"] = "user@contoso.onmicrosoft.com"
        else:
            raise ValueError("version must be 1 or 2")
        base.update(claims)
        payload = {k: v for k, v in base.items() if v is not None}
        signing = self.signing_key if kid is None else self._key_by_kid(kid)
        if signing is None:
            raise KeyError(f"no published key with kid {kid!r}")
        header: dict[str, Any] = {"typ": "JWT", "kid": signing.kid, "x5t": signing.kid}
        header.update(headers or {})
        if alg is None:
            return jwt.encode(payload, key=None, algorithm=None, headers=header)
        return jwt.encode(payload, key if key is not None else signing.private_key, algorithm=alg, headers=header)

    @staticmethod
    def sign(payload: Mapping[str, Any], private_key: Any, *, alg: str = "RS256", headers: Mapping[str, Any] | None = None) -> str:
        """Sign arbitrary claims with an arbitrary key (no defaults added)."""
        return jwt.encode(dict(payload), private_key, algorithm=alg, headers=dict(headers or {}))

    def _key_by_kid(self, kid: str | None) -> SigningKey | None:
        with self._lock:
            return next((k for k in self._keys if k.kid == kid), None)

    def validate(self, token: str, *, audiences: Iterable[str], leeway: int = 0) -> dict[str, Any]:
        """Validate a token this tenant issued (signature vs published keys, iss, aud, exp).

        Used by the OBO grant and the Key Vault emulator; raises ``jwt.InvalidTokenError``.
        """
        header = jwt.get_unverified_header(token)
        signing = self._key_by_kid(header.get("kid"))
        if signing is None:
            raise jwt.InvalidSignatureError("signing key not published in the tenant JWKS")
        return jwt.decode(
            token,
            signing.public_key,
            algorithms=["RS256"],
            audience=list(audiences),
            issuer=self.issuers,
            leeway=leeway,
            options={"require": ["exp", "iat", "aud", "iss", "tid"]},
        )

    # -- counters ------------------------------------------------------------
    @property
    def token_requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._token_requests)

    def token_request_count(
        self,
        *,
        grant: str | None = None,
        client_id: str | None = None,
        scope: str | None = None,
        user: str | None = None,
        succeeded: bool | None = None,
    ) -> int:
        """Count handled token requests matching every given filter.

        ``scope`` is compared to the resource scopes only (e.g. ``"api://x/.default"``).
        Requests answered by an injected fault are not handled and not counted here
        (they are in ``requests``).
        """
        return sum(
            1
            for r in self.token_requests
            if (grant is None or r.grant == grant)
            and (client_id is None or r.client_id == client_id)
            and (scope is None or r.scope == " ".join(sorted(scope.split())))
            and (user is None or r.user == user)
            and (succeeded is None or (r.status == 200) == succeeded)
        )

    def reset_counters(self) -> None:
        with self._lock:
            self._token_requests.clear()
            self.jwks_fetches = 0
            self.openid_config_fetches = 0
        self.requests.clear()

    # -- HTTP handlers -------------------------------------------------------
    def _known_tenant(self, tenant: str) -> bool:
        return tenant.lower() == self.tenant_id or tenant.lower() in self.tenant_aliases

    def _tenant_error(self, tenant: str) -> JSONResponse:
        return OAuthError(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.").response()

    async def _openid_v2(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        multi = tenant.lower() in ("common", "organizations")
        if not (multi or self._known_tenant(tenant)):
            return self._tenant_error(tenant)
        with self._lock:
            self.openid_config_fetches += 1
        tid = "{tenantid}" if multi else self.tenant_id
        base = f"{self.authority_host}/{tenant if multi else self.tenant_id}"
        return JSONResponse(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{self.authority_host}/{tid}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{self.authority_host}/oidc/userinfo",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "oid", "tid", "ver", "name"],
                "tenant_region_scope": "NA",
                "cloud_instance_name": "microsoftonline.com",
            }
        )

    async def _openid_v1(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if not self._known_tenant(tenant):
            return self._tenant_error(tenant)
        with self._lock:
            self.openid_config_fetches += 1
        base = f"{self.authority_host}/{self.tenant_id}"
        return JSONResponse(
            {
                "token_endpoint": f"{base}/oauth2/token",
                "jwks_uri": f"{base}/discovery/keys",
                "issuer": self.v1_issuer,
                "authorization_endpoint": f"{base}/oauth2/authorize",
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
                "subject_types_supported": ["pairwise"],
            }
        )

    async def _jwks(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if not (tenant.lower() in ("common", "organizations") or self._known_tenant(tenant)):
            return self._tenant_error(tenant)
        with self._lock:
            self.jwks_fetches += 1
            failure = self.jwks_failure_status
        if failure is not None:
            return JSONResponse({"error": "server_error"}, status_code=failure)
        return JSONResponse(self.jwks())

    def fail_jwks(self, status: int | None = 500) -> None:
        """Make the JWKS endpoint answer ``status`` until ``fail_jwks(None)``."""
        with self._lock:
            self.jwks_failure_status = status

    async def _token(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if not self._known_tenant(tenant):
            return self._tenant_error(tenant)
        form = {k: str(v) for k, v in (await request.form()).items()}
        grant_type = form.get("grant_type", "")
        client_id = form.get("client_id")
        raw_scopes = form.get("scope", "").split()
        resource_scopes = sorted(s for s in raw_scopes if s not in OIDC_SCOPES)
        grant = grant_type
        if grant_type == GRANT_JWT_BEARER and form.get("requested_token_use") == "on_behalf_of":
            grant = "on_behalf_of"
        user: str | None = None
        try:
            if grant not in ("client_credentials", "on_behalf_of", "refresh_token", "authorization_code"):
                raise OAuthError(400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant_type}'.")
            if not client_id:
                raise OAuthError(400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
            app = self.app_for(client_id)
            if app is None:
                raise OAuthError(
                    400,
                    "unauthorized_client",
                    700016,
                    f"Application with identifier '{client_id}' was not found in the directory '{self.tenant_id}'.",
                )
            if "resource" in form and resource_scopes:
                raise _resource_with_scopes()
            self._authenticate_client(app, form, tenant)
            if grant == "client_credentials":
                body = self._client_credentials(app, resource_scopes)
            elif grant == "authorization_code":
                body, user = self._authorization_code(app, form, raw_scopes, resource_scopes)
            elif grant == "on_behalf_of":
                body, user = self._on_behalf_of(app, form, raw_scopes, resource_scopes)
            else:
                body, user = self._refresh(app, form, raw_scopes, resource_scopes)
        except OAuthError as err:
            self._record(TokenRequest(grant, client_id, " ".join(resource_scopes), user, err.status, err.error))
            return err.response()
        self._record(TokenRequest(grant, client_id, " ".join(resource_scopes), user, 200, None))
        return JSONResponse(body, headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    def _record(self, entry: TokenRequest) -> None:
        with self._lock:
            self._token_requests.append(entry)

    # -- client authentication -------------------------------------------------
    def _authenticate_client(self, app: RegisteredApp, form: Mapping[str, str], tenant: str) -> None:
        if "client_secret" in form:
            if form["client_secret"] not in app.secrets:
                raise OAuthError(401, "invalid_client", 7000215, "Invalid client secret provided.")
            return
        assertion = form.get("client_assertion")
        if assertion is None:
            raise OAuthError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE_JWT:
            raise OAuthError(400, "invalid_request", 50027, "Invalid client_assertion_type.")
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.InvalidTokenError as exc:
            raise OAuthError(401, "invalid_client", 50027, f"Invalid JWT token. {exc}") from exc
        cert = app.certificate_for(header)
        if cert is not None:
            self._verify_certificate_assertion(app, assertion, cert, tenant)
            return
        for credential in app.federated_credentials:
            if unverified.get("iss") == credential.issuer:
                self._verify_federated_assertion(assertion, header, credential)
                return
        if "x5t" in header or "x5t#S256" in header:
            raise OAuthError(
                401,
                "invalid_client",
                700027,
                f"The certificate with identifier used to sign the client assertion is not registered on application {app.client_id}.",
            )
        raise OAuthError(400, "invalid_request", 70021, "No matching federated identity record found for presented assertion.")

    def _assertion_audiences(self, tenant: str) -> list[str]:
        audiences: list[str] = []
        for t in {self.tenant_id, tenant, *self.tenant_aliases}:
            base = f"{self.authority_host}/{t}"
            audiences += [f"{base}/oauth2/v2.0/token", f"{base}/oauth2/token", f"{base}/v2.0"]
        return audiences

    def _verify_certificate_assertion(self, app: RegisteredApp, assertion: str, cert: x509.Certificate, tenant: str) -> None:
        try:
            claims = jwt.decode(
                assertion,
                cert.public_key(),  # type: ignore[arg-type]
                algorithms=["RS256", "PS256"],
                audience=self._assertion_audiences(tenant),
                issuer=app.client_id,
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.InvalidSignatureError as exc:
            raise OAuthError(401, "invalid_client", 700027, "Client assertion failed signature validation.") from exc
        except jwt.ExpiredSignatureError as exc:
            raise OAuthError(401, "invalid_client", 700024, "Client assertion is not within its valid time range.") from exc
        except jwt.InvalidAudienceError as exc:
            raise OAuthError(401, "invalid_client", 700212, "No matching federated identity record found for presented assertion audience.") from exc
        except jwt.InvalidTokenError as exc:
            raise OAuthError(401, "invalid_client", 700023, f"Client assertion audience/issuer/subject is invalid: {exc}") from exc
        if claims.get("sub") != app.client_id:
            raise OAuthError(401, "invalid_client", 700021, "Client assertion application identifier doesn't match 'client_id' parameter.")

    def _verify_federated_assertion(self, assertion: str, header: Mapping[str, Any], credential: FederatedCredential) -> None:
        keys = [jwt.PyJWK.from_dict(dict(k)) for k in credential.keys().get("keys", []) if k.get("kty") == "RSA"]
        match = next((k for k in keys if k.key_id == header.get("kid")), None)
        if match is None:
            raise OAuthError(401, "invalid_client", 700027, "Client assertion contains an invalid signature. Key was not found.")
        try:
            claims = jwt.decode(
                assertion,
                match,
                algorithms=["RS256"],
                audience=list(credential.audiences),
                issuer=credential.issuer,
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.InvalidSignatureError as exc:
            raise OAuthError(401, "invalid_client", 700027, "Client assertion failed signature validation.") from exc
        except jwt.ExpiredSignatureError as exc:
            raise OAuthError(400, "invalid_request", 700024, "Client assertion is not within its valid time range.") from exc
        except jwt.InvalidAudienceError as exc:
            raise OAuthError(400, "invalid_request", 700212, "No matching federated identity record found for presented assertion audience.") from exc
        except jwt.InvalidTokenError as exc:
            raise OAuthError(400, "invalid_request", 700213, f"Invalid federated assertion: {exc}") from exc
        if claims.get("sub") != credential.subject:
            raise OAuthError(400, "invalid_request", 700213, "No matching federated identity record found for presented assertion subject.")

    # -- grants ----------------------------------------------------------------
    def _single_resource(self, resource_scopes: list[str], *, require_default: bool) -> tuple[str, list[str]]:
        if not resource_scopes:
            raise OAuthError(400, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
        resources: set[str] = set()
        names: list[str] = []
        for scope in resource_scopes:
            resource, sep, name = scope.rpartition("/")
            if not sep or not resource:
                raise OAuthError(400, "invalid_scope", 70011, f"The provided value for scope {scope} is not valid.")
            resources.add(resource)
            names.append(name)
        if len(resources) != 1:
            raise OAuthError(400, "invalid_scope", 28000, "Provided value for the input parameter scope is not valid because it contains more than one resource.")
        if require_default and names != [".default"]:
            raise OAuthError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {' '.join(resource_scopes)} is not valid. "
                "Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
            )
        return resources.pop(), names

    def _audience_and_version(self, resource: str) -> tuple[str, int]:
        api = self._api_for_resource(resource)
        if api is None:
            return resource, self.default_access_token_version
        version = api.access_token_version or self.default_access_token_version
        return (api.client_id if version == 2 else resource), version

    def _token_response(self, access_token: str, scope: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": access_token,
        }
        if scope is not None:
            body["scope"] = scope
        return body

    def _client_credentials(self, app: RegisteredApp, resource_scopes: list[str]) -> dict[str, Any]:
        resource, _ = self._single_resource(resource_scopes, require_default=True)
        aud, version = self._audience_and_version(resource)
        claims: dict[str, Any] = {
            "aud": aud,
            "oid": app.object_id,
            "sub": app.object_id,
            "azp" if version == 2 else "appid": app.client_id,
            "azpacr" if version == 2 else "appidacr": "2" if app.certificates else "1",
            "roles": app.app_roles.get(resource) or None,
            "idtyp": "app",
            "scp": None,
            "name": None,
            "preferred_username": None,
            "upn": None,
            "unique_name": None,
        }
        return self._token_response(self.mint(claims, version=version))

    def _user_token_response(
        self,
        app: RegisteredApp,
        user_claims: Mapping[str, Any],
        raw_scopes: list[str],
        resource_scopes: list[str],
        form: Mapping[str, str],
    ) -> dict[str, Any]:
        resource, names = self._single_resource(resource_scopes, require_default=False)
        aud, version = self._audience_and_version(resource)
        scp = app.delegated_scopes.get(resource, ["user_impersonation"]) if names == [".default"] else names
        carried = {k: user_claims[k] for k in ("oid", "sub", "name", "preferred_username", "upn") if k in user_claims}
        if version == 2 and "preferred_username" not in carried and "upn" in carried:
            carried["preferred_username"] = carried["upn"]
        if version == 1 and "upn" not in carried and "preferred_username" in carried:
            carried["upn"] = carried["preferred_username"]
        if version == 2:
            carried.pop("upn", None)
        else:
            carried.pop("preferred_username", None)
        claims: dict[str, Any] = {
            **carried,
            "aud": aud,
            "scp": " ".join(scp),
            "azp" if version == 2 else "appid": app.client_id,
            "azpacr" if version == 2 else "appidacr": "2" if app.certificates else "1",
        }
        body = self._token_response(self.mint(claims, version=version), scope=" ".join(f"{resource}/{n}" for n in scp))
        oid = str(user_claims["oid"])
        if "offline_access" in raw_scopes:
            refresh = _b64url(uuid.uuid4().bytes + uuid.uuid4().bytes)
            with self._lock:
                self._refresh_tokens[refresh] = (app.client_id, dict(user_claims))
            body["refresh_token"] = refresh
        if "openid" in raw_scopes:
            now = int(time.time())
            body["id_token"] = self.sign(
                {
                    "aud": app.client_id,
                    "iss": self.issuer_v2,
                    "iat": now,
                    "nbf": now,
                    "exp": now + self.token_lifetime,
                    "oid": oid,
                    "sub": user_claims.get("sub", oid),
                    "tid": self.tenant_id,
                    "name": user_claims.get("name"),
                    "preferred_username": user_claims.get("preferred_username") or user_claims.get("upn"),
                    "ver": "2.0",
                },
                self.signing_key.private_key,
                headers={"kid": self.signing_key.kid, "typ": "JWT"},
            )
        if form.get("client_info") == "1":
            body["client_info"] = _b64url(json.dumps({"uid": oid, "utid": self.tenant_id}).encode())
        return body

    def _on_behalf_of(
        self, app: RegisteredApp, form: Mapping[str, str], raw_scopes: list[str], resource_scopes: list[str]
    ) -> tuple[dict[str, Any], str | None]:
        assertion = form.get("assertion")
        if not assertion:
            raise OAuthError(400, "invalid_request", 900144, "The request body must contain the following parameter: 'assertion'.")
        try:
            user_claims = self.validate(assertion, audiences=[app.client_id, *app.identifier_uris])
        except jwt.ExpiredSignatureError as exc:
            raise OAuthError(400, "invalid_grant", 500133, "Assertion is not within its valid time range.") from exc
        except jwt.InvalidAudienceError as exc:
            raise OAuthError(400, "invalid_grant", 50013, "Assertion failed signature validation. [Reason - The provided audience is not valid.]") from exc
        except jwt.InvalidTokenError as exc:
            raise OAuthError(400, "invalid_grant", 50013, f"Assertion failed signature validation. [Reason - {exc}]") from exc
        if "scp" not in user_claims or "oid" not in user_claims:
            raise OAuthError(400, "invalid_grant", 50013, "Assertion is not a delegated (user) token.")
        user = str(user_claims["oid"])
        return self._user_token_response(app, user_claims, raw_scopes, resource_scopes, form), user

    def _refresh(
        self, app: RegisteredApp, form: Mapping[str, str], raw_scopes: list[str], resource_scopes: list[str]
    ) -> tuple[dict[str, Any], str | None]:
        presented = form.get("refresh_token", "")
        with self._lock:
            entry = self._refresh_tokens.get(presented)
        if entry is None or entry[0] != app.client_id:
            raise OAuthError(400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
        user_claims = entry[1]
        body = self._user_token_response(app, user_claims, raw_scopes, resource_scopes, form)
        if "refresh_token" in body:
            with self._lock:  # rotated: the old one is spent
                self._refresh_tokens.pop(presented, None)
        return body, str(user_claims["oid"])

    def _authorization_code(
        self, app: RegisteredApp, form: Mapping[str, str], raw_scopes: list[str], resource_scopes: list[str]
    ) -> tuple[dict[str, Any], str | None]:
        with self._lock:
            issued = self._codes.pop(form.get("code", ""), None)  # single use, even when refused below
        if issued is None or issued.expires_at < time.time() or issued.client_id != app.client_id:
            raise OAuthError(400, "invalid_grant", 70008, "The provided authorization code or refresh token has expired due to inactivity.")
        if form.get("redirect_uri") != issued.redirect_uri:
            raise OAuthError(400, "invalid_grant", 50148, "The redirect_uri does not match the one in the authorization request.")
        if issued.challenge is not None:
            verifier = form.get("code_verifier", "")
            if issued.method == "S256":
                computed = _b64url(hashlib.sha256(verifier.encode()).digest())
            else:
                computed = verifier
            if not verifier or computed != issued.challenge:
                raise OAuthError(400, "invalid_grant", 501481, "The Code_Verifier does not match the code_challenge supplied in the authorization request.")
        scopes = resource_scopes or sorted(s for s in issued.scopes if s not in OIDC_SCOPES)
        body = self._user_token_response(app, issued.user, raw_scopes or issued.scopes, scopes, form)
        return body, str(issued.user["oid"])

    # -- the authorization endpoint ------------------------------------------------
    async def _authorize(self, request: Request) -> Response:
        """Entra's /authorize with a scripted user; errors are redirected once the redirect URI is known good."""
        tenant = request.path_params["tenant"]
        params = {k: v for k, v in request.query_params.items()}
        client_id, redirect_uri = params.get("client_id"), params.get("redirect_uri")
        scope = params.get("scope", "")

        def log(outcome: str) -> None:
            with self._lock:
                self.authorize_requests.append(AuthorizeRequest(client_id, redirect_uri, scope, params, outcome))

        if not self._known_tenant(tenant):
            log("invalid_tenant")
            return PlainTextResponse(f"AADSTS90002: Tenant '{tenant}' not found.", status_code=400)
        app = self.app_for(client_id or "")
        if app is None:
            log("unauthorized_client")
            return PlainTextResponse(f"AADSTS700016: Application with identifier '{client_id}' was not found.", status_code=400)
        if not redirect_uri or redirect_uri not in app.redirect_uris:
            log("redirect_uri_mismatch")
            return PlainTextResponse("AADSTS50011: The redirect URI specified in the request does not match the redirect URIs configured for the application.", status_code=400)

        def back(**answer: str) -> Response:
            if "state" in params:
                answer["state"] = params["state"]
            return RedirectResponse(f"{redirect_uri}?{urlencode(answer)}", status_code=302)

        def refuse(error: OAuthError) -> Response:
            log(error.error)
            return back(error=error.error, error_description=error.body()["error_description"])

        raw_scopes = scope.split()
        resource_scopes = [s for s in raw_scopes if s not in OIDC_SCOPES]
        if params.get("response_type") != "code":
            return refuse(OAuthError(400, "unsupported_response_type", 700054, "response_type is not supported."))
        if "resource" in params and resource_scopes:
            return refuse(_resource_with_scopes())
        try:
            self._single_resource(resource_scopes, require_default=False)
        except OAuthError as error:
            return refuse(error)
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method", "plain" if challenge else "")
        if challenge is not None and method not in ("S256", "plain"):
            return refuse(OAuthError(400, "invalid_request", 501491, "Invalid code_challenge_method."))
        if self.user_declines:
            return refuse(OAuthError(400, "access_denied", 65004, "User declined to consent to access the app."))
        code = _b64url(uuid.uuid4().bytes + uuid.uuid4().bytes)
        with self._lock:
            self._codes[code] = _IssuedCode(
                app.client_id, redirect_uri, challenge, method, raw_scopes, dict(self.user), time.time() + 600
            )
        log("code")
        return back(code=code, session_state=str(uuid.uuid4()))


def _resource_with_scopes() -> OAuthError:
    return OAuthError(
        400,
        "invalid_target",
        9010010,
        "The resource parameter provided in the request doesn't match with the requested scopes.",
    )
