"""The gateway's own MCP servers for REST APIs, built with the official SDK.

Each `openapi` server is an SDK low-level `Server` (tools/list, tools/call) behind
the SDK's Streamable HTTP session manager in stateless mode with JSON answers: no
session to remember, so any instance answers any request, and every protocol
version the SDK speaks is served (2025-06-18 and 2025-11-25 with the initialize
handshake, 2026-07-28 per request).

The gateway has already checked the request (Host, Origin, size, inbound auth) and
read its body within its limits when it hands it here; the answer is a small JSON
document, returned whole, so the gateway's access log and CORS apply as to any
other answer. A client that leaves while a tool call is running cancels it, and
with it the REST request.

Documents are read and converted at start-up (`start`), once, in a worker thread
(a large API takes seconds of CPU): the gateway keeps answering meanwhile, and a
request that arrives first waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Callable

import httpx
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.responses import Response
from starlette.types import Message, Receive, Scope

from .. import __version__
from ..caller import Caller
from ..config import ServerConfig
from ..errors import ClientClosedRequest, ConfigError, GatewayMisconfigured
from .api import CallContext, Credentials, RestApi
from .document import Document, DocumentError, read_document
from .operations import ToolSpec, build_tools

logger = logging.getLogger("shared.openapi")

CALL_CONTEXT = "mcp_gateway.openapi.call"
"""The scope key under which a tool call finds who called (set by the gateway, read by the handler)."""

_PASSED_HEADERS = frozenset({b"content-type", b"mcp-session-id", b"mcp-protocol-version"})


class OpenApiServers:
    """Every `openapi` server of one gateway."""

    def __init__(
        self,
        servers: list[ServerConfig],
        *,
        http: Callable[[], httpx.AsyncClient],
        document_http: Callable[[], httpx.AsyncClient],
        credentials: Credentials,
        owned_headers: Callable[[ServerConfig], frozenset[str]],
        max_body_bytes: int,
    ) -> None:
        self._servers = servers
        self._max_body_bytes = max_body_bytes
        self._http = http
        self._document_http = document_http
        self._credentials = credentials
        self._owned_headers = owned_headers
        self.apis: dict[str, RestApi] = {}
        self._managers: dict[str, StreamableHTTPSessionManager] = {}
        self._starting: asyncio.Task[None] | None = None
        self._running: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None

    # -- start-up --------------------------------------------------------------------

    async def start(self) -> None:
        """Read and convert every document, and start the MCP servers (once; later calls wait for it).

        Raises ConfigError naming the server's document and, for a document that
        cannot be turned into tools, each operation and why.
        """
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self._start())
        # Shielded: a request that gives up waiting does not cancel the start-up.
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        apis = await asyncio.gather(*(self._load(server) for server in self._servers))
        managers = {api.server.name: _session_manager(api, self._max_body_bytes) for api in apis}
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._running = asyncio.get_running_loop().create_task(self._run(list(managers.values()), started))
        await started
        self.apis = {api.server.name: api for api in apis}
        self._managers = managers
        for api in apis:
            logger.info("server %r: %d tools from its OpenAPI document", api.server.name, len(api.tools))

    async def _load(self, server: ServerConfig) -> RestApi:
        assert server.openapi is not None
        http = self._document_http() if server.openapi.document_is_url else None
        specs = await load_tools(server, http, self._owned_headers(server))
        return RestApi(
            server, specs, http=self._http(), credentials=self._credentials, owned_headers=self._owned_headers(server)
        )

    async def _run(self, managers: list[StreamableHTTPSessionManager], started: asyncio.Future[None]) -> None:
        """The session managers' lifetime: they need a task group that outlives every request."""
        assert self._stop is not None
        try:
            async with contextlib.AsyncExitStack() as stack:
                for manager in managers:
                    await stack.enter_async_context(manager.run())
                started.set_result(None)
                await self._stop.wait()
        except BaseException as error:
            if not started.done():
                started.set_exception(error)
            raise

    async def aclose(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._running is not None:
            with contextlib.suppress(BaseException):
                await self._running
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()

    # -- one request -----------------------------------------------------------------

    async def handle(self, server: ServerConfig, scope: Scope, body: bytes, receive: Receive, caller: Caller) -> Response:
        """The MCP server's answer to one HTTP request whose body the gateway has read."""
        try:
            await self.start()
        except Exception:
            raise GatewayMisconfigured(f"server {server.name!r} could not be started: see the gateway's logs") from None
        manager = self._managers[server.name]
        exchange = _Exchange(body, receive)
        sdk_scope = {**scope, CALL_CONTEXT: CallContext(caller, scope)}
        await exchange.run(manager.handle_request(sdk_scope, exchange.receive, exchange.send))
        return exchange.response()


async def load_tools(
    server: ServerConfig, http: httpx.AsyncClient | None, owned_headers: frozenset[str] = frozenset()
) -> list[ToolSpec]:
    """A server's tools from its document; ConfigError naming the document (and each operation) if it cannot be."""
    config = server.openapi
    assert config is not None
    try:
        contents = await read_document(config.document, http)
        return await asyncio.to_thread(build_tools, Document(contents), config, owned_headers)
    except DocumentError as error:
        raise ConfigError(f"servers.{server.name}.openapi.document", str(error)) from None


def _session_manager(api: RestApi, max_body_bytes: int) -> StreamableHTTPSessionManager:
    definitions = api.definitions()

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=definitions)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        request = ctx.request
        context = request.scope.get(CALL_CONTEXT) if request is not None else None
        if not isinstance(context, CallContext):  # pragma: no cover - only the gateway calls this server
            raise RuntimeError("a tool call reached the OpenAPI server without the gateway's context")
        return await api.call(params.name, params.arguments or {}, context)

    info = api.server.description or None
    server = Server(
        api.server.name,
        version=__version__,
        description=info,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=lambda name: api.input_schema(name),
    )
    # The gateway guards Host and Origin and bounds the body (gateway.maxBodyBytes) before this
    # server sees a request: the SDK's own checks would only repeat them, or disagree.
    return StreamableHTTPSessionManager(
        app=server, stateless=True, json_response=True, security_settings=None, max_request_body_size=max_body_bytes
    )


class _Exchange:
    """One request handed to the SDK: its body replayed, its answer collected, its client watched."""

    def __init__(self, body: bytes, receive: Receive) -> None:
        self._body: bytes | None = body
        self._client_receive = receive
        self._gone = asyncio.Event()
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []

    async def receive(self) -> Message:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = [(k.lower(), v) for k, v in message.get("headers", []) if k.lower() in _PASSED_HEADERS]
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))

    async def run(self, handling: Any) -> None:
        """Serve, unless the client leaves first: then the call (and its REST request) is cancelled."""
        task = asyncio.ensure_future(handling)
        watcher = asyncio.ensure_future(self._watch())
        try:
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            watcher.cancel()
        if self._gone.is_set():
            raise ClientClosedRequest("client closed the request while its tool call ran")
        task.result()

    async def _watch(self) -> None:
        message = await self._client_receive()
        if message["type"] == "http.disconnect":
            self._gone.set()
            return
        # After a whole body only a disconnect may come (ASGI): a front door that answers
        # otherwise cannot report one, so stop asking rather than spin.
        await asyncio.get_running_loop().create_future()

    def response(self) -> Response:
        response = Response(b"".join(self.chunks), status_code=self.status)
        response.raw_headers = [h for h in response.raw_headers if h[0] != b"content-type"] + self.headers
        return response

