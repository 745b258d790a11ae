"""Key Vault secrets emulator over HTTPS.

Why: the gateway reads secrets (e.g. backend API keys) with
``azure-keyvault-secrets`` and a managed identity.  That SDK first sends the
request without a token, expects ``401`` with a bearer challenge naming the
authority and resource, then gets a token for ``{resource}/.default`` and
retries.  This emulator does exactly that and validates the bearer token
against the Entra emulator (signature via its published keys, issuer, ``aud``
``https://vault.azure.net``, expiry).

Wire protocol:

* ``GET /secrets/{name}[/{version}]?api-version=...`` -> secret bundle
  ``{"value", "id": "https://host:port/secrets/name/version", "attributes": {...}, "tags"}``
  (the SDK calls ``/secrets/name/`` with an empty version for "latest").
* ``PUT /secrets/{name}?api-version=...`` with ``{"value": ...}`` -> new version.
* Unknown secret -> ``404 {"error": {"code": "SecretNotFound", "message": ...}}``.
* No/invalid token -> ``401`` + ``WWW-Authenticate: Bearer authorization="{authority}",
  resource="https://vault.azure.net"``; a valid token from a principal not in
  ``allowed_principals`` (when set) -> ``403 Forbidden``.

Note for tests: the SDK caches the challenge process-wide keyed by host:port
(``azure.keyvault.secrets._shared.http_challenge_cache``); ports are ephemeral
but may be reused, so the fixture clears that cache.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.entra import EntraEmulator
from emulators.faults import FaultAndLogMiddleware, FaultInjector, RequestLog
from emulators.server import BackgroundServer
from emulators.tls import TestPKI

VAULT_RESOURCE = "https://vault.azure.net"


@dataclass
class SecretVersion:
    name: str
    version: str
    value: str
    content_type: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    enabled: bool = True
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass(frozen=True)
class VaultRequest:
    method: str
    name: str
    version: str | None
    principal: str | None  # oid of the caller, None if unauthenticated
    status: int


def _kv_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class KeyVaultEmulator:
    """One vault; secrets are versioned, the newest enabled version is "latest"."""

    def __init__(
        self,
        entra: EntraEmulator,
        pki: TestPKI,
        *,
        audiences: tuple[str, ...] = (VAULT_RESOURCE, VAULT_RESOURCE + "/"),
        allowed_principals: set[str] | None = None,
    ) -> None:
        self.entra = entra
        self.audiences = audiences
        self.allowed_principals = allowed_principals
        self._lock = threading.Lock()
        self._secrets: dict[str, list[SecretVersion]] = {}
        self._requests: list[VaultRequest] = []
        self.faults = FaultInjector(
            lambda status: {"error": {"code": "Throttled" if status == 429 else "InternalServerError", "message": "Injected fault."}}
        )
        self.requests = RequestLog()
        self.app = Starlette(
            routes=[Route("/secrets/{rest:path}", self._secrets_route, methods=["GET", "PUT"])],
            middleware=[Middleware(FaultAndLogMiddleware, faults=self.faults, log=self.requests)],
        )
        self.server = BackgroundServer(self.app, pki=pki)

    def start(self) -> "KeyVaultEmulator":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> "KeyVaultEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def vault_url(self) -> str:
        return self.server.base_url

    @property
    def challenge(self) -> str:
        return f'Bearer authorization="{self.entra.authority}", resource="{VAULT_RESOURCE}"'

    # -- test API ----------------------------------------------------------------
    def set_secret(self, name: str, value: str, *, content_type: str | None = None, tags: dict[str, str] | None = None) -> SecretVersion:
        """Create a new version (a rotation if the secret exists); returns it."""
        version = SecretVersion(name, uuid.uuid4().hex, value, content_type, dict(tags or {}))
        with self._lock:
            self._secrets.setdefault(name.lower(), []).append(version)
        return version

    def disable_version(self, name: str, version: str) -> None:
        with self._lock:
            for v in self._secrets.get(name.lower(), []):
                if v.version == version:
                    v.enabled = False

    def delete_secret(self, name: str) -> None:
        with self._lock:
            self._secrets.pop(name.lower(), None)

    def secret_id(self, name: str, version: str) -> str:
        return f"{self.vault_url}/secrets/{name}/{version}"

    @property
    def secret_requests(self) -> list[VaultRequest]:
        with self._lock:
            return list(self._requests)

    def get_count(self, name: str | None = None, *, authorized_only: bool = True) -> int:
        """Number of secret GETs (by default only those that passed auth)."""
        return sum(
            1
            for r in self.secret_requests
            if r.method == "GET"
            and (name is None or r.name.lower() == name.lower())
            and (not authorized_only or r.principal is not None)
        )

    def reset_counters(self) -> None:
        with self._lock:
            self._requests.clear()
        self.requests.clear()

    # -- handler -------------------------------------------------------------------
    def _authenticate(self, request: Request) -> tuple[str | None, Response | None]:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None, _kv_error(
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
                {"WWW-Authenticate": self.challenge},
            )
        try:
            claims = self.entra.validate(token.strip(), audiences=self.audiences)
        except jwt.InvalidTokenError as exc:
            return None, _kv_error(
                401,
                "Unauthorized",
                f"AKV10022: Invalid audience, issuer, signature or expired token: {exc}",
                {"WWW-Authenticate": self.challenge + ', error="invalid_token"'},
            )
        principal = str(claims.get("oid", ""))
        if self.allowed_principals is not None and principal not in self.allowed_principals:
            return None, JSONResponse(
                {
                    "error": {
                        "code": "Forbidden",
                        "message": f"Caller is not authorized to perform action on resource. Caller: oid={principal}",
                        "innererror": {"code": "ForbiddenByRbac"},
                    }
                },
                status_code=403,
            )
        return principal, None

    def _bundle(self, v: SecretVersion) -> dict[str, Any]:
        body: dict[str, Any] = {
            "value": v.value,
            "id": self.secret_id(v.name, v.version),
            "attributes": {
                "enabled": v.enabled,
                "created": v.created,
                "updated": v.created,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
            "tags": v.tags,
        }
        if v.content_type is not None:
            body["contentType"] = v.content_type
        return body

    async def _secrets_route(self, request: Request) -> Response:
        parts = request.path_params["rest"].split("/")
        name = parts[0]
        version = parts[1] if len(parts) > 1 and parts[1] else None
        principal: str | None = None
        response: Response
        if not request.query_params.get("api-version"):
            response = _kv_error(400, "BadParameter", "The api-version query parameter is required.")
        elif len(parts) > 2 or not name:
            response = _kv_error(400, "BadParameter", "Invalid secret path.")
        else:
            principal, denied = self._authenticate(request)
            if denied is not None:
                response = denied
            elif request.method == "PUT":
                response = await self._put(request, name, version)
            else:
                response = self._get(name, version)
        with self._lock:
            self._requests.append(VaultRequest(request.method, name, version, principal, response.status_code))
        return response

    def _get(self, name: str, version: str | None) -> Response:
        with self._lock:
            versions = list(self._secrets.get(name.lower(), []))
        if version is None:
            found = next((v for v in reversed(versions) if v.enabled), None)
        else:
            found = next((v for v in versions if v.version == version), None)
        if found is None:
            what = name if version is None else f"{name}/{version}"
            return _kv_error(404, "SecretNotFound", f"A secret with (name/id) {what} was not found in this key vault. "
                             "If you recently deleted this secret you may be able to recover it using the correct "
                             "recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182")
        if not found.enabled:
            return _kv_error(403, "Forbidden", "Operation get is not allowed on a disabled secret.")
        return JSONResponse(self._bundle(found))

    async def _put(self, request: Request, name: str, version: str | None) -> Response:
        if version is not None:
            return _kv_error(405, "BadParameter", "Set secret does not take a version.")
        try:
            body = await request.json()
        except ValueError:
            return _kv_error(400, "BadParameter", "Invalid JSON body.")
        if not isinstance(body, dict) or not isinstance(body.get("value"), str):
            return _kv_error(400, "BadParameter", "Property 'value' is required.")
        created = self.set_secret(name, body["value"], content_type=body.get("contentType"), tags=body.get("tags"))
        return JSONResponse(self._bundle(created))
