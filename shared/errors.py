"""One exception tree, and the one function that turns an error into a response.

    GatewayError
    ├── ConfigError                 bad config (start-up; never reaches a client)
    ├── GatewayMisconfigured   503  (Functions: the config is invalid, or a start-up check failed)
    ├── BadRequest             400  (ambiguous or malformed: repeated credential headers, bad Host)
    ├── UnknownServer          404
    ├── MethodNotAllowed       405
    ├── HostNotAllowed         421  (DNS-rebinding guard)
    ├── OriginNotAllowed       403  (DNS-rebinding guard)
    ├── RequestTimeout         408  (the client was too slow sending its request)
    ├── BodyTooLarge           413
    ├── HeadersTooLarge        431  (request target and headers over the limit, or too many headers)
    ├── ClientClosedRequest    499  (the client left while its body was streaming up)
    ├── Unauthorized           401  (no or bad credential; WWW-Authenticate challenge)
    │   └── TokenRejected      401  (a bearer token failed a validation check)
    ├── Forbidden              403  (valid credential, not allowed here: scope, role, server)
    ├── CallDenied             200  (policy: a tool, resource or prompt the caller may not use; a JSON-RPC error)
    ├── AuthUnavailable        503  (the credential cannot be checked now: the token issuer's keys are unreachable)
    ├── CredentialUnavailable  502/503 (the gateway could not get the backend's credential)
    ├── BackendUnavailable     502  (refused, reset, bad answer)
    ├── BackendTimeout         504
    └── OAuthError             400/401/503 (sign-in endpoints: RFC 6749 / RFC 7591 error bodies)

Messages are written for the caller: they name what was wrong, never a credential.
`client_message` is what a response body carries; an error whose message names
internals (a Key Vault secret, a vault, a token endpoint) keeps it for the logs and
gives clients a generic one.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

NO_ID: Any = object()
"""Marks a request that was not a JSON-RPC request (so the error body is plain JSON)."""


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    status = 500
    code = "internal_error"
    jsonrpc_code = -32603

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    @property
    def client_message(self) -> str:
        """The message a response body carries."""
        return self.message


class ConfigError(GatewayError):
    """The gateway config is invalid; `field` names the offending part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class GatewayMisconfigured(GatewayError):
    """The gateway cannot serve: its config is invalid, or a start-up check failed."""

    status = 503
    code = "gateway_misconfigured"
    jsonrpc_code = -32603


class BadRequest(GatewayError):
    """The request is malformed or ambiguous (e.g. a credential header sent twice)."""

    status = 400
    code = "bad_request"
    jsonrpc_code = -32600


class UnknownServer(GatewayError):
    """No server of that name is configured."""

    status = 404
    code = "unknown_server"
    jsonrpc_code = -32601


class MethodNotAllowed(GatewayError):
    """The route does not take this HTTP method."""

    status = 405
    code = "method_not_allowed"
    jsonrpc_code = -32600


class HostNotAllowed(GatewayError):
    """The Host header is not one this gateway serves (DNS rebinding)."""

    status = 421
    code = "host_not_allowed"
    jsonrpc_code = -32600


class OriginNotAllowed(GatewayError):
    """A browser Origin that is not allowed (DNS rebinding, cross-site calls)."""

    status = 403
    code = "origin_not_allowed"
    jsonrpc_code = -32600


class RequestTimeout(GatewayError):
    """The client did not send its request (head or body) in time."""

    status = 408
    code = "request_timeout"
    jsonrpc_code = -32600


class BodyTooLarge(GatewayError):
    """The request body is over the configured limit."""

    status = 413
    code = "body_too_large"
    jsonrpc_code = -32600


class HeadersTooLarge(GatewayError):
    """The request head is over the configured size, or has too many header fields."""

    status = 431
    code = "headers_too_large"
    jsonrpc_code = -32600


class ClientClosedRequest(GatewayError):
    """The client went away mid-request: nothing to answer, nothing to log above DEBUG."""

    status = 499
    code = "client_closed_request"
    jsonrpc_code = -32600


class Unauthorized(GatewayError):
    """No credential, or one that failed validation."""

    status = 401
    code = "unauthorized"
    jsonrpc_code = -32001


class TokenRejected(Unauthorized):
    """The token failed validation; the message says which check."""


class Forbidden(GatewayError):
    """A valid credential that does not allow this call."""

    status = 403
    code = "forbidden"
    jsonrpc_code = -32003


class CallDenied(GatewayError):
    """The server's policy does not let this caller use the tool, resource or prompt it named.

    Answered as the JSON-RPC error a backend gives for a name it does not have (HTTP 200,
    as any JSON-RPC answer): the caller learns nothing about what it may not see.
    """

    status = 200
    code = "call_denied"
    jsonrpc_code = -32602


class AuthUnavailable(GatewayError):
    """The caller's credential cannot be checked right now (e.g. no signing keys and the IdP unreachable)."""

    status = 503
    code = "auth_unavailable"
    jsonrpc_code = -32006


class CredentialUnavailable(GatewayError):
    """The backend's credential could not be obtained (identity, token endpoint or Key Vault failing).

    `message` names the step (a secret, a vault, a scope) for the logs; clients get
    `client_message`, which names only the server.
    """

    status = 503
    code = "credential_unavailable"
    jsonrpc_code = -32004

    def __init__(
        self, message: str, *, status: int = 503, headers: dict[str, str] | None = None, server: str | None = None
    ) -> None:
        super().__init__(message, headers=headers)
        self.status = status
        self.server = server

    @property
    def client_message(self) -> str:
        who = f"server {self.server!r}: " if self.server else ""
        if self.status == 503:
            return who + "the backend credential is unavailable for now: try again later"
        return who + "the gateway could not obtain the backend credential"


class BackendUnavailable(GatewayError):
    """The backend refused the connection, reset it, or answered unusably."""

    status = 502
    code = "backend_unavailable"
    jsonrpc_code = -32002


class BackendTimeout(GatewayError):
    """The backend did not answer within the configured time."""

    status = 504
    code = "backend_timeout"
    jsonrpc_code = -32005


class OAuthError(GatewayError):
    """An OAuth protocol error of the gateway's sign-in endpoints.

    `code` is the RFC 6749 / RFC 7591 error code (`invalid_request`, `invalid_grant`,
    `invalid_client`, `invalid_redirect_uri`, ...); the body is the OAuth shape
    `{"error", "error_description"}`, which OAuth clients read. Descriptions name what
    was wrong, never a token or a secret.
    """

    jsonrpc_code = -32600

    def __init__(self, code: str, message: str, *, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers=headers)
        self.code = code
        self.status = status


def error_response(error: GatewayError, jsonrpc_id: Any = NO_ID) -> Response:
    """The only place an error becomes an HTTP response body.

    A JSON-RPC request gets a JSON-RPC error with its own `id`, so an MCP client can
    match it to the call it made; an OAuth endpoint's error has the OAuth shape; anything
    else gets a small JSON error object.
    """
    if isinstance(error, OAuthError):
        return Response(
            json.dumps({"error": error.code, "error_description": error.client_message}, separators=(",", ":")).encode(),
            status_code=error.status,
            headers={"cache-control": "no-store", **error.headers},
            media_type="application/json",
        )
    if jsonrpc_id is NO_ID:
        body: dict[str, Any] = {"error": {"code": error.code, "message": error.client_message}}
    else:
        body = {
            "jsonrpc": "2.0",
            "id": jsonrpc_id,
            "error": {"code": error.jsonrpc_code, "message": error.client_message, "data": {"status": error.status}},
        }
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=error.status,
        headers=error.headers,
        media_type="application/json",
    )
