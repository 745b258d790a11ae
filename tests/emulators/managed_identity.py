"""App Service / Azure Functions managed identity endpoint emulator (plain HTTP).

Why: on Functions the gateway gets tokens from ``IDENTITY_ENDPOINT`` with the
``X-IDENTITY-HEADER`` secret.  ``azure-identity`` (and msal's
``ManagedIdentityClient``) detect this through the env vars ``IDENTITY_ENDPOINT``
and ``IDENTITY_HEADER`` and send::

    GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=R[&client_id=C|&object_id=O|&mi_res_id=M]
    X-IDENTITY-HEADER: <secret>

The answer has App Service's 2019-08-01 shape: ``access_token``,
``expires_on`` (epoch seconds as a *string*), ``resource``, ``token_type``,
``client_id``.  Errors use App Service's ``{"statusCode", "message",
"correlationId"}`` shape, which msal turns into ``invalid_scope`` /
``CredentialUnavailableError``.

Tokens are v1 app-only JWTs (like real MI tokens) signed by the Entra
emulator's keys: ``aud`` = resource, ``appid`` = identity client id,
``oid`` = ``sub`` = identity principal id, ``idtyp`` = ``app``.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.entra import EntraEmulator
from emulators.faults import FaultAndLogMiddleware, FaultInjector, RequestLog
from emulators.server import BackgroundServer

API_VERSION = "2019-08-01"
TOKEN_PATH = "/msi/token"


@dataclass(frozen=True)
class ManagedIdentity:
    """A system- or user-assigned identity (client id = app id, object id = principal id)."""

    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    resource_id: str = ""
    app_roles: dict[str, list[str]] = field(default_factory=dict)  # resource -> granted app roles


@dataclass(frozen=True)
class MIRequest:
    resource: str | None
    client_id: str | None  # as requested (None = system-assigned)
    identity: str | None  # client id of the identity that got the token
    status: int


class ManagedIdentityEmulator:
    """The Functions host's local token endpoint."""

    def __init__(
        self,
        entra: EntraEmulator,
        *,
        secret: str | None = None,
        system_identity: ManagedIdentity | None = None,
        token_lifetime: int = 24 * 3600,
    ) -> None:
        self.entra = entra
        self.secret = secret or uuid.uuid4().hex
        self.system_identity = system_identity or ManagedIdentity()
        self.token_lifetime = token_lifetime
        self._user_assigned: dict[str, ManagedIdentity] = {}
        self._lock = threading.Lock()
        self._requests: list[MIRequest] = []
        self.faults = FaultInjector(
            lambda status: {"statusCode": status, "message": "Injected fault.", "correlationId": str(uuid.uuid4())}
        )
        self.requests = RequestLog()
        self.app = Starlette(
            routes=[Route(TOKEN_PATH, self._token, methods=["GET"])],
            middleware=[Middleware(FaultAndLogMiddleware, faults=self.faults, log=self.requests)],
        )
        self.server = BackgroundServer(self.app)

    def start(self) -> "ManagedIdentityEmulator":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> "ManagedIdentityEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """Value for the ``IDENTITY_ENDPOINT`` env var."""
        return f"{self.server.base_url}{TOKEN_PATH}"

    def env(self) -> dict[str, str]:
        """The env vars the Functions host sets (for ``monkeypatch.setenv``)."""
        return {"IDENTITY_ENDPOINT": self.endpoint, "IDENTITY_HEADER": self.secret}

    def add_user_assigned(self, identity: ManagedIdentity | None = None) -> ManagedIdentity:
        identity = identity or ManagedIdentity()
        with self._lock:
            self._user_assigned[identity.client_id] = identity
        return identity

    # -- counters --------------------------------------------------------------
    @property
    def token_requests(self) -> list[MIRequest]:
        with self._lock:
            return list(self._requests)

    def token_request_count(self, *, resource: str | None = None, identity: str | None = None, succeeded: bool | None = None) -> int:
        """Handled requests (faults excluded) filtered by resource / identity client id."""
        return sum(
            1
            for r in self.token_requests
            if (resource is None or r.resource == resource)
            and (identity is None or r.identity == identity)
            and (succeeded is None or (r.status == 200) == succeeded)
        )

    def reset_counters(self) -> None:
        with self._lock:
            self._requests.clear()
        self.requests.clear()

    # -- handler ---------------------------------------------------------------
    def _find(self, params: Any) -> ManagedIdentity | None:
        with self._lock:
            candidates = [self.system_identity, *self._user_assigned.values()]
            if params.get("client_id"):
                return self._user_assigned.get(params["client_id"])
            if params.get("object_id") or params.get("principal_id"):
                wanted = params.get("object_id") or params.get("principal_id")
                return next((i for i in candidates if i.object_id == wanted and i is not self.system_identity), None)
            if params.get("mi_res_id"):
                return next((i for i in candidates if i.resource_id and i.resource_id.lower() == params["mi_res_id"].lower()), None)
            return self.system_identity

    @staticmethod
    def _error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())}, status_code=status)

    async def _token(self, request: Request) -> Response:
        params = request.query_params
        resource = params.get("resource")
        requested_client = params.get("client_id")
        identity: ManagedIdentity | None = None
        response: Response
        if request.headers.get("x-identity-header") != self.secret:
            response = self._error(401, "The X-IDENTITY-HEADER header is missing or invalid.")
        elif params.get("api-version") != API_VERSION:
            response = self._error(400, f"The api-version '{params.get('api-version')}' is not supported. Use {API_VERSION}.")
        elif not resource:
            response = self._error(400, "The 'resource' query parameter is required.")
        else:
            identity = self._find(params)
            if identity is None:
                response = self._error(400, "No managed identity found for the specified ClientId/ResourceId/PrincipalId.")
            else:
                now = int(time.time())
                expires_on = now + self.token_lifetime
                claims: dict[str, Any] = {
                    "aud": resource,
                    "oid": identity.object_id,
                    "sub": identity.object_id,
                    "appid": identity.client_id,
                    "appidacr": "2",
                    "idtyp": "app",
                    "roles": identity.app_roles.get(resource) or None,
                    "scp": None,
                    "name": None,
                    "upn": None,
                    "unique_name": None,
                }
                token = self.entra.mint(claims, version=1, lifetime=self.token_lifetime)
                response = JSONResponse(
                    {
                        "access_token": token,
                        "expires_on": str(expires_on),
                        "resource": resource,
                        "token_type": "Bearer",
                        "client_id": identity.client_id,
                    }
                )
        with self._lock:
            self._requests.append(
                MIRequest(resource, requested_client, identity.client_id if identity else None, response.status_code)
            )
        return response
