"""An HTTP response as a tool result, by its media type.

    2xx JSON               the JSON as text, and `structuredContent` when the tool
                           declares an output schema (checked against it first)
    2xx text/*, XML, ...   text
    2xx image/*, audio/*   image or audio content (base64)
    2xx anything else      an embedded resource (base64 blob)
    anything else          `isError`: the status, and the start of the body as text

How much is read is bounded by the caller (ResponseBody.truncated says the body
went on); an error result carries at most ERROR_BODY_CHARACTERS of it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Callable

import mcp_types as types

ERROR_BODY_CHARACTERS = 4096
"""How much of a failed request's body an error result shows the model."""

_TEXTUAL = ("application/xml", "application/javascript", "application/x-www-form-urlencoded", "application/yaml")


@dataclass(frozen=True)
class ResponseBody:
    status: int
    media_type: str
    """The Content-Type's essence, lower case ("" when the API sent none)."""
    charset: str | None
    data: bytes
    truncated: bool


def error_result(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


def tool_result(
    response: ResponseBody,
    *,
    resource_uri: str,
    output_problem: Callable[[Any], str | None] | None,
    limit: int,
) -> types.CallToolResult:
    """`output_problem` checks a JSON result against the tool's output schema (None: no schema)."""
    if not 200 <= response.status < 300:
        return error_result(_failure_text(response))
    if response.truncated:
        return error_result(
            f"The API answered {_status_line(response.status)} with a body over the {limit}-byte limit: "
            "ask for less (a narrower query, a smaller page)."
        )
    essence = response.media_type
    if _is_json(essence) and response.data:
        text = _decode(response)
        try:
            value = json.loads(text)
        except ValueError:
            value = _NOT_JSON
        if output_problem is None:
            return _text_result(text)
        problem = "it is not JSON" if value is _NOT_JSON else output_problem(value)
        if problem is None:
            return types.CallToolResult(content=[types.TextContent(type="text", text=text)], structured_content=value)
        return error_result(
            f"The API answered {_status_line(response.status)}, but its response does not match the operation's "
            f"documented schema ({problem}). The response:\n{text}"
        )
    if output_problem is not None:
        return error_result(
            f"The API answered {_status_line(response.status)} without the JSON body its description promises."
        )
    if not response.data:
        return _text_result(f"The API answered {_status_line(response.status)} with no body.")
    if essence.startswith("text/") or essence in _TEXTUAL or essence.endswith("+xml") or essence.endswith("+json"):
        return _text_result(_decode(response))
    encoded = base64.b64encode(response.data).decode("ascii")
    if essence.startswith("image/"):
        return types.CallToolResult(content=[types.ImageContent(type="image", data=encoded, mime_type=essence)])
    if essence.startswith("audio/"):
        return types.CallToolResult(content=[types.AudioContent(type="audio", data=encoded, mime_type=essence)])
    if not essence:
        try:
            return _text_result(response.data.decode("utf-8"))
        except UnicodeDecodeError:
            essence = "application/octet-stream"
    blob = types.BlobResourceContents(uri=resource_uri, mime_type=essence, blob=encoded)
    return types.CallToolResult(content=[types.EmbeddedResource(type="resource", resource=blob)])


_NOT_JSON = object()


def _text_result(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


def _is_json(essence: str) -> bool:
    return essence == "application/json" or essence.endswith("+json")


def _decode(response: ResponseBody) -> str:
    try:
        return response.data.decode(response.charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return response.data.decode("utf-8", errors="replace")


def _status_line(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _failure_text(response: ResponseBody) -> str:
    text = f"The API answered {_status_line(response.status)}."
    essence = response.media_type
    textual = not essence or essence.startswith("text/") or _is_json(essence) or essence in _TEXTUAL or "xml" in essence
    if response.data and textual:
        body = _decode(response)
        more = response.truncated or len(body) > ERROR_BODY_CHARACTERS
        text += "\n" + body[:ERROR_BODY_CHARACTERS] + ("\n[... the rest of the body is left out]" if more else "")
    return text
