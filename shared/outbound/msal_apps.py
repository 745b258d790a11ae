"""msal confidential clients for `clientCredentials` and `onBehalfOf`, kept off the event loop.

msal is synchronous: every call runs in a worker thread (asyncio.to_thread). Its
HTTP client is an `httpx.Client` (msal takes any client with requests' get/post shape),
so all HTTP the gateway itself makes goes through httpx. It trusts certifi +
`gateway.caBundle` and ignores the environment (`trust_env=False`: SSL_CERT_FILE and
proxy variables would otherwise apply).

Two msal behaviours are switched off on purpose:
- its token cache (`_NoTokenCache`): the gateway's own TokenCache decides when to
  refresh, and on-behalf-of results (with refresh tokens) would otherwise pile up
  per user in memory;
- its replay of recent 429/5xx/400 answers (`_NoErrorReplay`): msal would hand a
  retry the cached error for up to Retry-After (or 5 s, 60 s for 400) without
  asking the endpoint, so the gateway's bounded retries would never reach it.
  Single flight keeps the gateway from hammering the endpoint instead.

The app credential is read for each token request (Key Vault values are cached
by SecretStore), and the msal app rebuilt when it changed, so a rotated client
secret or certificate is picked up without a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from typing import Any, Callable

import httpx
import msal
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from ..config.outbound import Certificate, ClientSecret, EntraApp, ManagedIdentityAssertion
from ..httpclient import tls_context
from ..retry import Permanent, Transient, with_retries
from .base import Machinery
from .cache import Token

_TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error"})
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:RSA |ENCRYPTED )?PRIVATE KEY-----.+?-----END (?:RSA |ENCRYPTED )?PRIVATE KEY-----", re.S)
_TIMEOUT = 10.0


class _NoTokenCache(msal.TokenCache):
    def add(self, event: Any, now: Any = None) -> None:  # noqa: D102 - see module docstring
        return None


class _NoErrorReplay(dict):  # type: ignore[type-arg]
    """msal's http_cache minus its POST entries (the replayed errors)."""

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(key, str) and key.startswith("POST "):
            return
        super().__setitem__(key, value)


class _MsalHttpClient(httpx.Client):
    """httpx as msal's HTTP client.

    msal hands some form values over as bytes (its signed client assertions);
    requests sends those as text, httpx would send their repr, so they are decoded here.
    """

    def post(self, url: Any, *, data: Any = None, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        if isinstance(data, dict):
            data = {k: v.decode() if isinstance(v, bytes) else v for k, v in data.items()}
        return super().post(url, data=data, **kwargs)


def http_session(ca_bundle: str | None) -> httpx.Client:
    return _MsalHttpClient(verify=tls_context(ca_bundle), trust_env=False, timeout=_TIMEOUT, follow_redirects=False)


def certificate_credential(pem: str) -> dict[str, str]:
    """msal's certificate credential from PEM holding an RSA private key and the certificate."""
    try:
        match = _PRIVATE_KEY.search(pem)
        key = serialization.load_pem_private_key(match.group(0).encode(), password=None) if match else None
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        key, certs = None, []
    if not isinstance(key, RSAPrivateKey) or not certs:
        raise Permanent("the certificate secret must be PEM with an unencrypted RSA private key and its certificate")
    der = certs[0].public_bytes(serialization.Encoding.DER)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {
        "private_key": key_pem.decode(),
        "thumbprint": hashlib.sha1(der).hexdigest().upper(),  # noqa: S324 - protocol-defined x5t
        "public_certificate": certs[0].public_bytes(serialization.Encoding.PEM).decode(),
    }


def _result_token(result: dict[str, Any], issued: float) -> Token:
    if "access_token" in result:
        expires_in = float(result.get("expires_in", 3600))
        refresh_in = result.get("refresh_in")
        return Token(
            result["access_token"], issued + expires_in, issued + float(refresh_in) if refresh_in else None
        )
    error = str(result.get("error", "unknown error"))
    codes = result.get("error_codes") or []
    detail = f"{error}{' (AADSTS' + str(codes[0]) + ')' if codes else ''}"
    if error in _TRANSIENT_ERRORS:
        raise Transient(f"token endpoint answered {detail}")
    raise Permanent(f"token endpoint refused the request: {detail}")


class MsalApps:
    """One msal app per app registration (rebuilt when its credential changes)."""

    def __init__(self, machinery: Machinery, ca_bundle: str | None) -> None:
        self.machinery = machinery
        self.ca_bundle = ca_bundle
        self._session: httpx.Client | None = None
        self._apps: dict[EntraApp, tuple[str, msal.ConfidentialClientApplication]] = {}
        self._assertions: dict[EntraApp, str] = {}

    @property
    def session(self) -> httpx.Client:
        if self._session is None:
            self._session = http_session(self.ca_bundle)
        return self._session

    async def acquire(
        self, app: EntraApp, step: str, call: Callable[[msal.ConfidentialClientApplication], dict[str, Any]]
    ) -> Token:
        """Run one msal token call (in a thread) with bounded retries; `step` names it in errors."""
        issued, result = await self.result(app, step, call)
        return _result_token(result, issued)

    async def result(
        self, app: EntraApp, step: str, call: Callable[[msal.ConfidentialClientApplication], dict[str, Any]]
    ) -> tuple[float, dict[str, Any]]:
        """(when it was asked, msal's whole answer) of a successful token call: sign-in needs
        the refresh and ID token claims too. Refusals raise like `acquire`."""

        async def once() -> tuple[float, dict[str, Any]]:
            client = await self._client(app)
            issued = time.time()
            try:
                result = await asyncio.to_thread(call, client)
            except httpx.HTTPError as error:
                raise Transient(f"token endpoint unreachable ({type(error).__name__})") from None
            except msal.exceptions.MsalServiceError:
                raise Transient("token endpoint answered a server error") from None
            _result_token(result, issued)  # raises for an error answer
            return issued, result

        return await with_retries(step, once, self.machinery.retry)

    async def _credential(self, app: EntraApp) -> tuple[str, Any]:
        """(fingerprint, msal client_credential) for the app, reading Key Vault / the identity."""
        credential = app.credential
        if isinstance(credential, ClientSecret):
            value = await self.machinery.secrets.get(credential.secret)
            return hashlib.sha256(value.encode()).hexdigest(), value
        if isinstance(credential, Certificate):
            pem = await self.machinery.secrets.get(credential.secret)
            return hashlib.sha256(pem.encode()).hexdigest(), certificate_credential(pem)
        assert isinstance(credential, ManagedIdentityAssertion)
        identity = self.machinery.identity
        scope = f"{credential.audience.rstrip('/')}/.default"
        info = await with_retries(
            f"managed identity token for the client assertion ({credential.audience})",
            lambda: identity.token(scope, client_id=credential.client_id),
            self.machinery.retry,
        )
        self._assertions[app] = info.token
        return "managed-identity", {"client_assertion": lambda: self._assertions[app]}

    async def _client(self, app: EntraApp) -> msal.ConfidentialClientApplication:
        fingerprint, credential = await self._credential(app)
        known = self._apps.get(app)
        if known is not None and known[0] == fingerprint:
            return known[1]
        try:
            client = await asyncio.to_thread(
                msal.ConfidentialClientApplication,
                app.client_id,
                client_credential=credential,
                authority=app.authority,
                instance_discovery=False,  # the authority host is configured (sovereign clouds, emulators)
                http_client=self.session,
                http_cache=_NoErrorReplay(),
                token_cache=_NoTokenCache(),
            )
        except httpx.HTTPError as error:
            raise Transient(f"authority metadata unreachable ({type(error).__name__})") from None
        except ValueError:
            # msal's wording for a failed discovery; the answer may be a 5xx or an unknown tenant
            raise Transient("authority metadata could not be read") from None  # the step names the authority
        self._apps[app] = (fingerprint, client)
        return client

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        self._apps.clear()
