"""MCP SDK servers in the three configurations a gateway must carry.

stateful-sse: sessions, SSE responses, GET stream, resumable with an event store.
stateless:    no sessions, SSE responses.
json:         stateless, plain JSON responses.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import defaultdict
from typing import Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from starlette.types import ASGIApp

BackendKind = Literal["stateful-sse", "stateless", "json"]
BACKEND_KINDS: tuple[BackendKind, ...] = ("stateful-sse", "stateless", "json")


class MemoryEventStore(EventStore):
    """Every event of every stream, in order, for `Last-Event-ID` replay."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._events: list[tuple[StreamId, EventId, object]] = []
        self.replays: list[EventId] = []

    async def store_event(self, stream_id: StreamId, message) -> EventId:
        event_id = f"{stream_id}:{next(self._counter)}"
        self._events.append((stream_id, event_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        self.replays.append(last_event_id)
        ids = [e[1] for e in self._events]
        if last_event_id not in ids:
            return None
        stream_id = self._events[ids.index(last_event_id)][0]
        for sid, eid, message in self._events[ids.index(last_event_id) + 1 :]:
            if sid == stream_id and message is not None:
                await send_callback(EventMessage(message, eid))
        return stream_id


class Rendezvous:
    """Lets a tool wait until the test's client has seen its first progress event.

    If the gateway buffered the stream, the client could never see progress before
    the result, and the tool would report that instead of finishing normally.
    """

    def __init__(self) -> None:
        self.events: dict[str, threading.Event] = defaultdict(threading.Event)

    def arrived(self, key: str) -> None:
        self.events[key].set()

    async def wait(self, key: str, timeout: float) -> bool:
        return await asyncio.to_thread(self.events[key].wait, timeout)


def build_server(rendezvous: Rendezvous | None = None) -> MCPServer:
    server = MCPServer("gateway-test-backend")
    rendezvous = rendezvous or Rendezvous()

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    async def slow_progress(ctx: Context, seconds: float = 2.0, steps: int = 10) -> str:
        """Emit `steps` progress notifications spread over `seconds`."""
        for i in range(1, steps + 1):
            await ctx.report_progress(i, steps, f"step {i}")
            await asyncio.sleep(seconds / steps)
        return "done"

    @server.tool()
    async def progress_then_wait(ctx: Context, key: str, timeout: float = 10.0) -> str:
        """Send one progress event, then finish only once the client says it saw it."""
        await ctx.report_progress(1, 2, "first")
        seen = await rendezvous.wait(key, timeout)
        return "client saw progress first" if seen else "client never saw progress"

    @server.resource("test://greeting", mime_type="text/plain")
    def greeting() -> str:
        """A fixed text resource."""
        return "hello through the gateway"

    @server.prompt()
    def summarize(topic: str) -> str:
        """A one-message prompt."""
        return f"Summarize {topic}."

    return server


def build_app(kind: BackendKind, *, event_store: EventStore | None = None, rendezvous: Rendezvous | None = None) -> ASGIApp:
    server = build_server(rendezvous)
    return server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=kind != "stateful-sse",
        json_response=kind == "json",
        event_store=event_store if kind == "stateful-sse" else None,
    )
