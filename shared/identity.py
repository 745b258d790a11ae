"""The gateway's managed identity (azure-identity, async) and the HTTP session Azure SDK clients share.

Everything here is created lazily, on first use inside the loop that serves
requests: the gateway object itself may be built in another thread (tests) or
before any loop runs (Azure Functions). TLS trust is the gateway's own
(certifi + `gateway.caBundle`, see httpclient.tls_context); proxy and CA
environment variables are not read.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from azure.core.credentials import AccessTokenInfo
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.identity import CredentialUnavailableError
from azure.identity.aio import ManagedIdentityCredential

from .httpclient import tls_context
from .retry import Permanent, Transient, parse_retry_after

SDK_OPTIONS: dict[str, Any] = {"retry_total": 0, "connection_timeout": 10, "read_timeout": 30}
"""azure-core's own retries are off: shared.retry does them, the same way for every step."""


class AzureHttp:
    """One aiohttp session for every azure-core async client of the gateway."""

    def __init__(self, ca_bundle: str | None) -> None:
        self.ca_bundle = ca_bundle
        self._session: aiohttp.ClientSession | None = None

    def transport(self) -> AioHttpTransport:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=tls_context(self.ca_bundle), limit=32)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return AioHttpTransport(session=self._session, session_owner=False)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class ManagedIdentity:
    """Tokens of the app's system-assigned identity, or of user-assigned ones by client id."""

    def __init__(self, http: AzureHttp, *, default_client_id: str | None = None) -> None:
        self.http = http
        self.default_client_id = default_client_id
        self._credentials: dict[str | None, ManagedIdentityCredential] = {}

    def credential(self, client_id: str | None = None) -> ManagedIdentityCredential:
        client_id = client_id or self.default_client_id
        credential = self._credentials.get(client_id)
        if credential is None:
            kwargs: dict[str, Any] = {"transport": self.http.transport(), **SDK_OPTIONS}
            if client_id:
                kwargs["client_id"] = client_id
            credential = self._credentials[client_id] = ManagedIdentityCredential(**kwargs)
        return credential

    async def token(self, scope: str, *, client_id: str | None = None) -> AccessTokenInfo:
        """One attempt; failures are classified for shared.retry."""
        try:
            return await self.credential(client_id).get_token_info(scope)
        except Exception as error:  # noqa: BLE001 - classified, never swallowed
            raise classify(error, "managed identity endpoint") from None

    def for_sdk(self, purpose: str) -> "_LabelledCredential":
        """The default identity as an SDK credential whose failures name `purpose` (e.g. 'token for Key Vault')."""
        return _LabelledCredential(self, f"managed identity endpoint ({purpose})")

    async def aclose(self) -> None:
        credentials, self._credentials = list(self._credentials.values()), {}
        await asyncio.gather(*(c.close() for c in credentials), return_exceptions=True)


class _LabelledCredential:
    """An async token credential for SDK clients: a failure surfaces as the identity step's own.

    Without it, an identity endpoint that is down looks like the client's service
    being down (the SDK raises the same ServiceRequestError for both).
    """

    def __init__(self, identity: ManagedIdentity, label: str) -> None:
        self._identity = identity
        self._label = label

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        try:
            return await self._identity.credential().get_token_info(*scopes, options=options)
        except Exception as error:  # noqa: BLE001 - classified, never swallowed
            raise classify(error, self._label) from None

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        try:
            return await self._identity.credential().get_token(*scopes, **kwargs)
        except Exception as error:  # noqa: BLE001 - classified, never swallowed
            raise classify(error, self._label) from None

    async def close(self) -> None:
        """The identity's own credentials are closed by their owner."""

    async def __aenter__(self) -> "_LabelledCredential":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def _status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    status = getattr(error, "status_code", None) or getattr(response, "status_code", None)
    return int(status) if status else None


def _retry_after(error: BaseException) -> float | None:
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    return parse_retry_after(headers.get("Retry-After") or headers.get("retry-after"))


def classify(error: BaseException, endpoint: str) -> Transient | Permanent:
    """An azure-core / azure-identity exception as Transient or Permanent, in words without secrets."""
    if isinstance(error, (Transient, Permanent)):
        return error
    if isinstance(error, CredentialUnavailableError):
        return Permanent(f"no managed identity is available here ({type(error).__name__})")
    if isinstance(error, (ServiceRequestError, ServiceResponseError, aiohttp.ClientError, OSError, asyncio.TimeoutError)):
        return Transient(f"{endpoint} unreachable ({type(error).__name__})")
    status = _status(error)
    if status is not None and (status == 429 or status >= 500):
        return Transient(f"{endpoint} answered {status}", retry_after=_retry_after(error))
    if isinstance(error, (HttpResponseError, ClientAuthenticationError)):
        code = getattr(getattr(error, "error", None), "code", None)
        return Permanent(f"{endpoint} refused the request ({status or 'no status'}{', ' + code if code else ''})")
    return Permanent(f"{endpoint} failed ({type(error).__name__})")
