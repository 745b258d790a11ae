"""Small helpers shared by the gateway tests."""

from __future__ import annotations

from typing import Any, AsyncIterator


def anonymous(url: str, **extra: Any) -> dict[str, Any]:
    """A server entry that admits any caller (the only inbound mode the core has)."""
    return {"url": url, "anonymous": True, **extra}


def gateway_config(servers: dict[str, dict[str, Any]], **gateway: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"servers": servers}
    if gateway:
        document["gateway"] = gateway
    return document


async def sse_events(response) -> "AsyncIterator[dict[str, str]]":
    """Parse an httpx streaming response as Server-Sent Events (id, event, data)."""
    event: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if event:
                yield event
            event = {}
            continue
        if line.startswith(":"):
            event.setdefault("comments", "")
            event["comments"] += line[1:].strip()
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        event[name] = event[name] + "\n" + value if name == "data" and name in event else value
    if event:
        yield event
