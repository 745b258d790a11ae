"""tools/list, resources/list and prompts/list answers, cut down to what the caller may use.

Answers are recognised by their shape (a result holding a `tools`, `resources` or
`prompts` array), not by matching ids, so no id trick (a reused id, an id of an odd
type, an event replayed on a GET stream) gets an unfiltered list through.

A JSON answer is read whole (bounded) and rewritten. An event stream is rewritten
event by event: each event is passed on as soon as its blank line arrives, and only
an event that carries a list result is re-encoded; every other event goes on byte
for byte. An answer that cannot be read is not passed on unfiltered: the stream is
broken off (fail closed).
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.responses import Response

from ..caller import Caller
from ..config import ServerConfig
from ..config.policy import GovernedMethod
from ..errors import BackendUnavailable
from ..headers import downstream_headers
from ..transport import UpstreamResponse
from .rules import ServerRules

MAX_ANSWER_BYTES = 16 * 1024 * 1024
"""The largest list answer (JSON body, or one event) the gateway reads to filter."""

_LISTS: tuple[tuple[str, GovernedMethod, str], ...] = (
    ("tools", "tools/call", "name"),
    ("prompts", "prompts/get", "name"),
    ("resources", "resources/read", "uri"),
)
_LINE_END = re.compile(rb"\r\n|\r|\n")


def filter_message(message: Any, rules: ServerRules, caller: Caller) -> bool:
    """Drop the entries of a list result the caller may not use; True when it was a list result."""
    if isinstance(message, list):
        return any([filter_message(m, rules, caller) for m in message])
    result = message.get("result") if isinstance(message, dict) else None
    if not isinstance(result, dict):
        return False
    found = False
    for key, method, name_key in _LISTS:
        entries = result.get(key)
        if isinstance(entries, list):
            found = True
            result[key] = [
                e for e in entries if isinstance(e, dict) and rules.allows(method, e.get(name_key), caller)
            ]
    if found and "cacheScope" in result:
        result["cacheScope"] = "private"  # what this caller sees is not what others see
    return found


def filter_json(data: bytes, rules: ServerRules, caller: Caller) -> bytes:
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        raise BackendUnavailable("the backend's answer to a list request is not JSON") from None
    if not filter_message(message, rules, caller):
        return data
    return _encode(message)


async def filtered_json_response(
    upstream: UpstreamResponse, server: ServerConfig, rules: ServerRules, caller: Caller, extra_headers: list
) -> Response:
    """A JSON answer read whole (within the server's read timeout and MAX_ANSWER_BYTES), then filtered."""
    body = bytearray()
    try:
        while (chunk := await upstream.stream.read(server.timeouts.read)) is not None:
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise BackendUnavailable(f"the backend's list answer is over {MAX_ANSWER_BYTES} bytes")
    except TimeoutError:
        raise BackendUnavailable(f"backend of server {server.name!r} stopped sending its answer") from None
    finally:
        await upstream.stream.aclose()
    headers, _ = downstream_headers(upstream.headers)
    headers = [(k, v) for k, v in headers if k != b"content-length"] + extra_headers
    response = Response(filter_json(bytes(body), rules, caller), status_code=upstream.status)
    response.raw_headers = [h for h in response.raw_headers if h[0] == b"content-length"] + headers
    return response


class EventStreamFilter:
    """A ProxyResponse rewriter: complete events out, list results filtered."""

    def __init__(self, rules: ServerRules, caller: Caller) -> None:
        self.rules = rules
        self.caller = caller
        self._pending = b""
        self._scanned = 0
        """How far into `_pending` lines have been looked at already."""

    def feed(self, chunk: bytes) -> bytes:
        pending = self._pending + chunk
        out = bytearray()
        event_start = 0
        line_start = self._scanned
        for end in _LINE_END.finditer(pending, self._scanned):
            if end.group() == b"\r" and end.end() == len(pending):
                break  # a CR at the end may be half of a CRLF
            if end.start() == line_start:  # a blank line ends the event
                out += self._event(pending[event_start : end.end()])
                event_start = end.end()
            line_start = end.end()
        self._pending = pending[event_start:]
        self._scanned = line_start - event_start
        if len(self._pending) > MAX_ANSWER_BYTES:
            raise BackendUnavailable(f"an event of the backend's stream is over {MAX_ANSWER_BYTES} bytes")
        return bytes(out)

    def _event(self, event: bytes) -> bytes:
        if b"result" not in event:
            return event
        lines = _LINE_END.split(event)
        data = [line[5:].removeprefix(b" ") for line in lines if line.startswith(b"data:")]
        if not data:
            return event
        try:
            message = json.loads(b"\n".join(data))
        except (ValueError, RecursionError):
            return event  # not JSON: no list result the client could read either
        if not filter_message(message, self.rules, self.caller):
            return event
        kept = [line for line in lines if line and not line.startswith(b"data:")]
        return b"".join(line + b"\n" for line in kept) + b"data: " + _encode(message) + b"\n\n"


def _encode(message: Any) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
