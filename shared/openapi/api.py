"""One REST API behind one `openapi` server: its tools, and how a tool call reaches it.

    tools/call -> the tool (unknown: a JSON-RPC error) -> arguments checked against
    its input schema -> the HTTP request -> the backend credential -> the API, through
    the gateway's own upstream transport -> a bounded read -> the tool result

Everything that can go wrong after the tool is found (bad arguments, a credential
that cannot be had, an API that fails, is slow or unreachable) is an `isError`
result the model can read: never an HTTP 500, never a JSON-RPC internal error.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

import httpx
import jsonschema
import mcp_types as types
from mcp.shared.exceptions import MCPError
from starlette.types import Scope

from ..caller import Caller
from ..config import ServerConfig
from ..errors import BackendTimeout, BackendUnavailable, GatewayError
from .content import ERROR_BODY_CHARACTERS, ResponseBody, error_result, tool_result
from .operations import ToolSpec
from .request import ArgumentError, HttpRequest, build_request

logger = logging.getLogger("shared.openapi")

Credentials = Callable[[ServerConfig, Caller, Scope], Awaitable[list[tuple[bytes, bytes]]]]
"""The gateway's outbound stage: the backend credential's headers for this caller."""


@dataclass(frozen=True)
class CallContext:
    """What the gateway knows of the request a tool call came in: who called, and its scope."""

    caller: Caller
    scope: Scope


class Tool:
    """A tool and its validators (compiled on first use: most tools of a large API are never called)."""

    def __init__(self, spec: ToolSpec) -> None:
        self.spec = spec

    @functools.cached_property
    def _input(self) -> jsonschema.Draft202012Validator:
        return jsonschema.Draft202012Validator(self.spec.input_schema)

    @functools.cached_property
    def _output(self) -> jsonschema.Draft202012Validator | None:
        schema = self.spec.output_schema
        return jsonschema.Draft202012Validator(schema) if schema is not None else None

    def input_problem(self, arguments: Mapping[str, Any]) -> str | None:
        return _problem(self._input, arguments)

    @property
    def output_check(self) -> Callable[[Any], str | None] | None:
        validator = self._output
        return None if validator is None else functools.partial(_problem, validator)

    def definition(self) -> types.Tool:
        spec = self.spec
        return types.Tool(
            name=spec.name,
            title=spec.title,
            description=spec.description,
            input_schema=dict(spec.input_schema),
            output_schema=dict(spec.output_schema) if spec.output_schema is not None else None,
            annotations=types.ToolAnnotations.model_validate(spec.annotations),
        )


def _problem(validator: jsonschema.Draft202012Validator, value: Any) -> str | None:
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"{'$' + where}: {error.message[:300]}"


class RestApi:
    def __init__(
        self,
        server: ServerConfig,
        specs: list[ToolSpec],
        *,
        http: httpx.AsyncClient,
        credentials: Credentials,
        owned_headers: frozenset[str],
    ) -> None:
        assert server.openapi is not None
        self.server = server
        self.config = server.openapi
        self.tools = {spec.name: Tool(spec) for spec in specs}
        self.http = http
        self.credentials = credentials
        # Headers the gateway sets: a header parameter of the same name is never sent.
        self._owned = owned_headers | {name.lower() for name, _ in server.headers}
        self._static = [(name, value) for name, value in server.headers]

    def definitions(self) -> list[types.Tool]:
        return [tool.definition() for tool in self.tools.values()]

    def input_schema(self, name: str) -> Mapping[str, Any] | None:
        tool = self.tools.get(name)
        return tool.spec.input_schema if tool is not None else None

    async def call(self, name: str, arguments: Mapping[str, Any], context: CallContext) -> types.CallToolResult:
        tool = self.tools.get(name)
        if tool is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {name}")
        started = time.perf_counter()
        result = await self._call(tool, arguments, context)
        logger.debug(
            "server %r tool %r: %s in %.1f ms",
            self.server.name, name, "error" if result.is_error else "ok", (time.perf_counter() - started) * 1000,
        )
        return result

    async def _call(self, tool: Tool, arguments: Mapping[str, Any], context: CallContext) -> types.CallToolResult:
        problem = tool.input_problem(arguments)
        if problem is not None:
            return error_result(f"Invalid arguments: {problem}")
        try:
            request = build_request(tool.spec.operation, arguments, self.config.base_url)
        except ArgumentError as error:
            return error_result(f"Invalid arguments: {error}")
        # Any failure from here on is one of the gateway's own errors (errors.py), whose
        # client messages name the server and the limit, never a credential.
        try:
            credential = await self.credentials(self.server, context.caller, context.scope)
            response = await self._exchange(request, credential)
        except GatewayError as error:
            return error_result(error.client_message)
        # A binary result is named by the server and the API path, never by the API's host.
        uri = f"openapi://{self.server.name}{request.path}"
        return tool_result(response, resource_uri=uri, output_problem=tool.output_check, limit=self.config.max_response_bytes)

    async def _exchange(self, request: HttpRequest, credential: list[tuple[bytes, bytes]]) -> ResponseBody:
        timeouts = self.server.timeouts
        headers = [(k, v) for k, v in request.headers if k.lower() not in self._owned]
        headers += self._static
        headers += [(k.decode("latin-1"), v.decode("latin-1")) for k, v in credential]
        outgoing = self.http.build_request(
            request.method,
            request.url,
            headers=headers,
            content=request.content,
            timeout=httpx.Timeout(timeouts.read, connect=timeouts.connect),
        )
        name = self.server.name
        try:
            response = await self.http.send(outgoing, stream=True)
        except httpx.ConnectTimeout:
            raise BackendTimeout(f"the API of server {name!r} did not accept a connection within {timeouts.connect:g} s") from None
        except httpx.TimeoutException:
            raise BackendTimeout(f"the API of server {name!r} did not answer within {timeouts.read:g} s") from None
        except (httpx.HTTPError, OSError) as error:
            raise BackendUnavailable(f"the API of server {name!r} is unreachable ({type(error).__name__})") from None
        try:
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise BackendUnavailable(f"the API of server {name!r} answered with a {encoding}-encoded body, unasked")
            # A failure needs only the start of its body; a success up to the limit (and one byte more, to tell).
            success = 200 <= response.status_code < 300
            limit = self.config.max_response_bytes if success else ERROR_BODY_CHARACTERS * 4
            try:
                async with asyncio.timeout(timeouts.read):
                    data, truncated = await _read_bounded(response, limit)
            except TimeoutError:
                raise BackendTimeout(f"the API of server {name!r} did not send its whole answer within {timeouts.read:g} s") from None
            except (httpx.HTTPError, OSError) as error:
                raise BackendUnavailable(f"the API of server {name!r} broke off its answer ({type(error).__name__})") from None
        finally:
            await response.aclose()
        content_type = response.headers.get("content-type", "")
        essence, _, params = content_type.partition(";")
        charset = None
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset":
                charset = value.strip().strip('"') or None
        return ResponseBody(response.status_code, essence.strip().lower(), charset, data, truncated)


async def _read_bounded(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes; the rest is never read (the connection is dropped, not drained)."""
    data = bytearray()
    async for chunk in response.aiter_raw():
        data += chunk
        if len(data) > limit:
            return bytes(data[:limit]), True
    return bytes(data), False
