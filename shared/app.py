"""The gateway as one ASGI app: routes, and the pipeline every request runs through.

`Gateway.handle` takes a Starlette Request and returns a response, so the local
server (uvicorn, via `__call__`) and Azure Functions (function_app.py) share it.
"""

from __future__ import annotations

import logging
import time

import httpx
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterable, AsyncIterator, Literal, Mapping
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from . import __version__
from .authority import ORIGIN_KEY, PublicOrigin
from .body import RequestBody, UploadWatch
from .config import GatewayConfig, ServerConfig
from .cors import CorsHandler
from .errors import NO_ID, BadRequest, GatewayError, GatewayMisconfigured, MethodNotAllowed, UnknownServer, error_response
from .guard import HostGuard
from .headers import (
    INBOUND_CREDENTIAL_HEADERS,
    SINGLE_HEADERS,
    get_header,
    query_names,
    refuse_repeated,
    refuse_repeated_params,
    refuse_upgrade_with_body,
    strip_query_params,
    upstream_headers,
)
from .httpclient import https_client
from .caller import Caller
from .inbound import InboundAuthenticator
from .inbound.keys import key_secret_refs
from .inbound.metadata import PRM_PREFIX
from .legacy_sse import MessageEndpoints
from .limits import BodyLimits, HeadLimits
from .outbound import BackendCredentials, uses_secret_store, uses_sign_in
from .proxy import ProxyResponse, UpstreamClient, UpstreamTarget, open_upstream
from .signing import Signer
from .settings import env
from .config.model import MemoryStoreConfig

if TYPE_CHECKING:
    from .oauth import SignInService
    from .openapi.server import OpenApiServers
    from .policy import Admitted, PolicyGate
    from .secrets import SecretStore

logger = logging.getLogger("shared.app")
access_log = logging.getLogger("shared.access")

RouteKind = Literal[
    "home", "health", "metadata", "mcp", "sse", "message", "openapi",
    # sign-in (servers with auth.entra.signIn): the gateway as authorization server
    "oauth-metadata", "jwks", "authorize", "consent", "callback", "token", "register",
]

_METHODS: Mapping[RouteKind, frozenset[str]] = {
    "home": frozenset({"GET"}),
    "health": frozenset({"GET"}),
    "metadata": frozenset({"GET"}),
    "mcp": frozenset({"GET", "POST", "DELETE"}),
    "sse": frozenset({"GET"}),
    "message": frozenset({"POST"}),
    # The gateway's own stateless MCP server: no GET stream, no session to DELETE.
    "openapi": frozenset({"POST"}),
    "oauth-metadata": frozenset({"GET"}),
    "jwks": frozenset({"GET"}),
    "authorize": frozenset({"GET"}),
    "consent": frozenset({"POST"}),
    "callback": frozenset({"GET"}),
    "token": frozenset({"POST"}),
    "register": frozenset({"POST"}),
}
_SIGN_IN_ROUTES = frozenset({"oauth-metadata", "jwks", "authorize", "consent", "callback", "token", "register"})
_CREDENTIAL_QUERY_PARAMS = frozenset({"subscription-key"})


@dataclass(frozen=True)
class Route:
    kind: RouteKind
    server: ServerConfig | None = None


class Gateway:
    def __init__(self, config: GatewayConfig, *, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.guard = HostGuard.from_settings(config.gateway, environ)
        self.cors = CorsHandler(config.gateway.cors)
        self.upstream = UpstreamClient(config.gateway.ca_bundle)
        self.message_endpoints = MessageEndpoints(Signer.from_settings(environ))
        self.head_limits = HeadLimits.from_settings(config.gateway)
        self.uploads = UploadWatch(BodyLimits.from_settings(config.gateway))
        self._identity_http: httpx.AsyncClient | None = None
        self._rest_http: httpx.AsyncClient | None = None
        self.startup_error: Exception | None = None
        self.secrets = open_secret_store(config, environ)
        self.inbound = InboundAuthenticator(config, secrets=self.secrets, http=self._identity_client)
        self.outbound = BackendCredentials(config, secrets=self.secrets, environ=environ)
        self.openapi = self._openapi_servers()
        self.policy = self._policy_gate()
        self.sign_in = self._sign_in_service(environ)
        # Per-server facts the hot path needs, worked out once.
        self._routes = self._known_routes()
        self._targets = {name: UpstreamTarget.parse(server.url) for name, server in config.servers.items()}
        self._dropped_headers = {
            name: INBOUND_CREDENTIAL_HEADERS
            | self.inbound.credential_headers(server)
            | self.outbound.credential_headers(server)
            # a configured header replaces the caller's copies
            | frozenset(k.lower().encode() for k, _ in server.headers)
            for name, server in config.servers.items()
        }
        self._extra_headers = {
            name: tuple((k.lower().encode(), v.encode()) for k, v in server.headers)
            for name, server in config.servers.items()
        }
        self._credential_query = {
            name: _CREDENTIAL_QUERY_PARAMS | self.inbound.credential_query_params(server)
            for name, server in config.servers.items()
        }
        # A configured URL's parameters are the backend's contract: a client cannot restate them.
        self._dropped_query = {
            name: self._credential_query[name] | _configured_query_names(server)
            for name, server in config.servers.items()
        }
        self._metadata_vary = "Host, X-Forwarded-Host, X-Forwarded-Proto" if config.gateway.trust_forwarded_headers else "Host"
        self._single_headers = SINGLE_HEADERS.union(
            *(self.inbound.credential_headers(server) for server in config.servers.values())
        )

    def _sign_in_service(self, environ: Mapping[str, str] | None) -> "SignInService | None":
        """The authorization server facade, when some server offers sign-in (else nothing is built or loaded)."""
        if not uses_sign_in(self.config):
            return None
        from .oauth import SignInService
        from .oauth.entra import EntraSignInClient
        from .oauth.keys import SignInKeys
        from .store import build_store

        assert self.secrets is not None  # uses_secret_store covers sign-in
        keys = SignInKeys.from_settings(environ)  # refuses to start without the shared key
        if isinstance(self.config.gateway.store, MemoryStoreConfig) and env("WEBSITE_HOSTNAME", environ):
            logger.warning(
                "sign-in keeps its single-use codes in memory (gateway.store): with more than one instance, "
                "a code could be redeemed once on each; configure gateway.store.tableStorage"
            )
        service = SignInService(
            self.config,
            keys=keys,
            store=build_store(self.config.gateway.store, identity=self.secrets.identity),
            entra=EntraSignInClient(self.outbound.msal_apps()),
            check_entra_token=self.inbound.check_entra_token,
        )
        self.inbound.own_tokens = service.tokens
        return service

    def _known_routes(self) -> dict[str, Route]:
        """Every valid path, resolved once: the hot path is one dict lookup."""
        routes = {"/": Route("home"), "/healthz": Route("health")}
        for name, server in self.config.servers.items():
            if server.openapi is not None:
                routes[f"/mcp/{name}"] = Route("openapi", server)
            elif server.transport == "sse":
                routes[f"/mcp/{name}/sse"] = Route("sse", server)
                routes[f"/mcp/{name}/message"] = Route("message", server)
            else:
                routes[f"/mcp/{name}"] = Route("mcp", server)
        if self.sign_in is not None:
            routes.update({"/oauth/jwks": Route("jwks"), "/oauth/consent": Route("consent"),
                           "/oauth/callback": Route("callback")})
            for name, server in self.sign_in.servers.items():
                for path in (f"/.well-known/oauth-authorization-server/oauth/{name}",
                             f"/.well-known/openid-configuration/oauth/{name}",
                             f"/oauth/{name}/.well-known/openid-configuration"):
                    routes[path] = Route("oauth-metadata", server)
                for kind in ("authorize", "token", "register"):
                    routes[f"/oauth/{name}/{kind}"] = Route(kind, server)  # type: ignore[arg-type]
        return routes

    def _openapi_servers(self) -> "OpenApiServers | None":
        """The gateway's own MCP servers for REST APIs; their code is loaded only when configured."""
        servers = [server for server in self.config.servers.values() if server.openapi is not None]
        if not servers:
            return None
        from .openapi.server import OpenApiServers

        return OpenApiServers(
            servers,
            http=self._rest_client,
            document_http=self._identity_client,
            credentials=self.outbound.headers_for,
            # The credential's header and the configured static ones are the gateway's to set.
            owned_headers=lambda server: frozenset(
                [name.decode() for name in self.outbound.credential_headers(server)]
                + [name.lower() for name, _ in server.headers]
            ),
            max_body_bytes=self.config.gateway.max_body_bytes,
        )

    def _policy_gate(self) -> "PolicyGate | None":
        """MCP-aware rules, loaded only when some server has a policy."""
        if not any(server.policy is not None for server in self.config.servers.values()):
            return None
        from .policy import PolicyGate

        return PolicyGate(self.config)

    def _rest_client(self) -> httpx.AsyncClient:
        """REST APIs are called through the same upstream transport (pool) as MCP backends."""
        if self._rest_http is None:
            self._rest_http = httpx.AsyncClient(
                transport=self.upstream.transport,
                trust_env=False,
                follow_redirects=False,
                headers={"user-agent": f"mcp-gateway/{__version__}", "accept-encoding": "identity"},
            )
        return self._rest_http

    def _identity_client(self) -> httpx.AsyncClient:
        """HTTPS to identity providers, created in the running loop on first use."""
        if self._identity_http is None:
            self._identity_http = https_client(self.config.gateway.ca_bundle)
        return self._identity_http

    # -- ASGI front door (local server) ---------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = await self.handle(Request(scope, receive))
            await response(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as error:  # reported to the server, which refuses to start
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        """Start-up checks: every Key Vault secret the config names can be read.

        Raises on failure (the local server then refuses to start); the failure is
        also kept, so that /healthz answers 503 where the process cannot refuse to run.
        """
        try:
            if self.secrets is not None:
                await self.secrets.check(self.inbound.keys.secret_refs())
            await self.outbound.startup_check()
            if self.openapi is not None:
                await self.openapi.start()
        except Exception as error:
            self.startup_error = error
            logger.error("start-up check failed: %s", error)
            raise

    def _health(self) -> Response:
        if self.startup_error is not None:
            raise GatewayMisconfigured("a start-up check failed: see the gateway's logs")
        return JSONResponse({"status": "ok", "version": __version__})

    async def aclose(self) -> None:
        if self.sign_in is not None:
            await self.sign_in.aclose()
        if self.openapi is not None:
            await self.openapi.aclose()
        if self._rest_http is not None:
            await self._rest_http.aclose()
            self._rest_http = None
        await self.upstream.aclose()
        await self.outbound.aclose()
        if self.secrets is not None:
            await self.secrets.aclose()
        if self._identity_http is not None:
            await self._identity_http.aclose()
            self._identity_http = None

    # -- the pipeline ----------------------------------------------------------------

    async def handle(self, request: Request) -> Any:
        started = time.perf_counter()
        body: RequestBody | None = None
        route: Route | None = None
        try:
            self.head_limits.check(request.scope)
            refuse_repeated(request.scope, self._single_headers)
            refuse_upgrade_with_body(request.scope)
            self.guard.check(request.scope)
            route = self._routes.get(request.scope["path"]) or self._resolve(request.scope["path"])
            if request.method == "OPTIONS" and route.kind not in ("home", "health"):
                return self.cors.preflight(request)
            if request.method not in _METHODS[route.kind]:
                raise MethodNotAllowed(f"{request.method} is not allowed on {request.scope['path']}")
            if route.kind == "health":
                return self._health()
            if route.kind == "home":
                return JSONResponse({**_HOME, "docs": self.config.gateway.docs_url})
            if route.kind == "metadata":
                return self._metadata(request, route)
            if route.kind in _SIGN_IN_ROUTES:
                body = self._request_body(request)
                if body is not None:
                    body.refuse_declared_oversize()
                return await self._sign_in(request, route, body)
            assert route.server is not None
            body = self._request_body(request)
            if body is not None:
                body.refuse_declared_oversize()
            refuse_repeated_params(request.scope, self._credential_query[route.server.name])
            caller = await self.inbound.authenticate(route.server, request)
            admitted = None
            if route.server.policy is not None:
                assert self.policy is not None
                admitted = await self.policy.admit(route.server, request, body, caller)
            if route.kind == "openapi":
                response = await self._serve_openapi(request, route.server, body, caller)
            else:
                response = await self._forward(request, route, body, caller, admitted)
        except GatewayError as error:
            response = await self._error_response(error, body)
            self.cors.decorate(request, response.raw_headers)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "%s %s server=%s status=%s ms=%.1f",
                request.method,
                request.scope["path"],
                route.server.name if route and route.server else "-",
                response.status_code,
                (time.perf_counter() - started) * 1000,
            )
        return response

    def _resolve(self, path: str) -> Route:
        if path == "/healthz":
            return Route("health")
        if path.startswith(PRM_PREFIX):
            return self._resolve_metadata(path[len(PRM_PREFIX) :])
        parts = path.strip("/").split("/")
        if len(parts) < 2 or len(parts) > 3 or parts[0] != "mcp":
            raise UnknownServer(f"no route for {path}")
        server = self.config.servers.get(parts[1])
        if server is None:
            raise UnknownServer(f"no MCP server named {parts[1]!r}")
        if server.openapi is not None:
            raise UnknownServer(f"no route for {path}: use /mcp/{server.name}")
        kind: RouteKind = "mcp" if len(parts) == 2 else parts[2]  # type: ignore[assignment]
        if kind not in ("mcp", "sse", "message"):
            raise UnknownServer(f"no route for {path}")
        if (server.transport == "sse") != (kind != "mcp"):
            hint = f"/mcp/{server.name}/sse" if server.transport == "sse" else f"/mcp/{server.name}"
            raise UnknownServer(f"server {server.name!r} speaks {server.transport}: use {hint}")
        return Route(kind, server)

    def _resolve_metadata(self, rest: str) -> Route:
        if rest.strip("/") == "":
            return Route("metadata")
        parts = rest.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "mcp" and parts[1] in self.config.servers:
            return Route("metadata", self.config.servers[parts[1]])
        raise UnknownServer(f"no protected resource metadata at {PRM_PREFIX}{rest}")

    def _metadata(self, request: Request, route: Route) -> Response:
        if route.server is None:
            document = self.inbound.root_metadata(request)
            if document is None:
                raise UnknownServer("no gateway-wide protected resource metadata: use the per-server form")
        else:
            document = self.inbound.metadata(route.server, request)
            if document is None:
                raise UnknownServer(f"server {route.server.name!r} does not take bearer tokens")
        # Public metadata: browser-based MCP clients read it cross-origin. Unless publicBaseUrl
        # names the gateway, the document names the request's host: caches must key on it.
        headers = {"access-control-allow-origin": "*", "cache-control": "max-age=300"}
        if not self.config.gateway.public_base_url:
            headers["vary"] = self._metadata_vary
        return JSONResponse(document, headers=headers)

    async def _sign_in(self, request: Request, route: Route, body: RequestBody | None) -> Response:
        service, server, kind = self.sign_in, route.server, route.kind
        assert service is not None
        if kind == "oauth-metadata" or kind == "jwks":
            document = service.metadata(server, request) if server is not None else service.jwks()
            headers = {"access-control-allow-origin": "*", "cache-control": "max-age=300"}
            if not self.config.gateway.public_base_url and kind == "oauth-metadata":
                headers["vary"] = self._metadata_vary
            return JSONResponse(document, headers=headers)
        if kind == "consent":
            return await service.consent(request, body)
        if kind == "callback":
            return await service.callback(request)
        assert server is not None
        if kind == "authorize":
            return await service.authorize(server, request)
        if kind == "token":
            return await service.token(server, request, body)
        return await service.register(server, request, body)

    def _request_body(self, request: Request) -> RequestBody | None:
        if request.method in ("GET", "DELETE", "HEAD"):
            return None
        length = get_header(request.scope, b"content-length")
        # ASCII digits only (str.isdigit() alone takes "²"): the value goes upstream as it came.
        if length is not None and not (length.isascii() and length.isdigit()):
            raise BadRequest("invalid Content-Length")
        expect = get_header(request.scope, b"expect")
        return RequestBody(
            request.receive,
            self.uploads,
            declared_length=int(length) if length is not None else None,
            expects_continue=expect is not None and expect.lower() == "100-continue",
        )

    @staticmethod
    async def _error_response(error: GatewayError, body: RequestBody | None) -> Response:
        """The error answer, naming the JSON-RPC id when a bounded read of the body finds it.

        A body the client is still sending leaves the connection unusable for another
        request: the answer closes it rather than draining an upload of any length.
        """
        if body is None:
            return error_response(error)
        await body.read_for_error()
        response = error_response(error, body.jsonrpc_id())
        if not body.complete:
            response.raw_headers.append((b"connection", b"close"))
        return response

    async def _serve_openapi(
        self, request: Request, server: ServerConfig, body: RequestBody | None, caller: Caller
    ) -> Response:
        """A REST API's MCP server answers in-process; the body is read whole (within the limits) first."""
        assert self.openapi is not None and body is not None
        payload = b"".join([chunk async for chunk in body])
        response = await self.openapi.handle(server, request.scope, payload, request.receive, caller)
        response.raw_headers += self.cors.response_headers(request)
        return response

    async def _forward(
        self, request: Request, route: Route, body: RequestBody | None, caller: Caller, admitted: "Admitted | None" = None
    ) -> Response:
        server = route.server
        assert server is not None
        query = strip_query_params(request.scope.get("query_string", b""), self._dropped_query[server.name])
        if route.kind == "message":
            target = self.message_endpoints.upstream_target(server, self._targets[server.name], query)
        else:
            target = self._targets[server.name].with_query(query)
        client = request.scope.get("client")
        origin: PublicOrigin = request.scope[ORIGIN_KEY]
        headers = upstream_headers(
            request.scope["headers"],
            client_ip=client[0] if client else "unknown",
            scheme=origin.scheme,
            host=origin.authority.text,
            dropped=self._dropped_headers[server.name],
            extra=self._extra_headers[server.name],
        )
        headers += await self.outbound.headers_for(server, caller, request.scope)
        content: AsyncIterable[bytes] | None = body
        if route.kind == "sse" or admitted is not None:
            # The endpoint event, or a list answer, is rewritten, so it must arrive uncompressed.
            headers = [(k, v) for k, v in headers if k != b"accept-encoding"] + [(b"accept-encoding", b"identity")]
        if admitted is not None and admitted.payload is not None:
            content = _replay(admitted.payload)  # the policy read the body whole
        upstream = await open_upstream(
            self.upstream,
            server,
            method=request.method,
            target=target,
            headers=headers,
            content=content,
            receive=request.receive,
        )
        extra = self.cors.response_headers(request)
        rewrite = self.message_endpoints.rewriter(server) if route.kind == "sse" and 200 <= upstream.status < 300 else None
        if admitted is not None and admitted.filter_answer and 200 <= upstream.status < 300:
            from .policy import EventStreamFilter, filtered_json_response

            content_type = next((v.lower() for k, v in upstream.headers if k.lower() == b"content-type"), b"")
            if content_type.startswith(b"application/json"):
                return await filtered_json_response(upstream, server, admitted.rules, caller, extra)
            if content_type.startswith(b"text/event-stream"):
                rewrite = EventStreamFilter(admitted.rules, caller)
        return ProxyResponse(
            upstream, server, keep_alive=self.config.gateway.keep_alive_seconds, extra_headers=extra, rewrite=rewrite
        )


async def _replay(payload: bytes) -> AsyncIterator[bytes]:
    yield payload


def _configured_query_names(server: ServerConfig) -> frozenset[str]:
    return query_names(urlsplit(server.url).query) | query_names(urlsplit(server.message_url or "").query)


_HOME = {
    "name": "MCP gateway",
    "version": __version__,
    "mcp": "MCP servers are served at /mcp/<server>; ask your administrator for the server names",
    "health": "/healthz",
}
"""What `GET /` answers: who this is, never which servers it fronts."""


def open_secret_store(config: GatewayConfig, environ: Mapping[str, str] | None) -> SecretStore | None:
    """Key Vault and the managed identity, for a config that reads the one or uses the other.

    They bring the Azure SDKs and aiohttp, the largest imports of the gateway, so
    secrets.py is imported here and only then: an MCP client's first connect after a
    scale-out waits for every import. Without them, no key, secret or identity is used.
    """
    if not (key_secret_refs(config.subscriptions) or uses_secret_store(config)):
        return None
    from .secrets import SecretStore

    return SecretStore(config.gateway, environ=environ)


def create_app(config: GatewayConfig, *, environ: Mapping[str, str] | None = None) -> Gateway:
    """The one factory both front doors use."""
    return Gateway(config, environ=environ)
