"""The id of the JSON-RPC request in a body, or in the first bytes of one.

An error answer names the request's id so an MCP client can match it to its call.
A complete body is parsed whole (json.loads decides, as it would for the backend);
of a body that is too large, or did not arrive, only a prefix is known: its
top-level members are read one by one and any value that has not fully arrived
ends the reading, so a prefix never yields an id the whole body does not have
(a number is taken only once the delimiter after it has arrived). Nested objects
with their own "id", and strings that merely contain `"id":`, are skipped whole
by the C decoder. At most MAX_MEMBERS members are read, so a hostile prefix costs
no more than one pass over it.
"""

from __future__ import annotations

import codecs
import json
import re
from json.decoder import scanstring
from typing import Any

from .errors import NO_ID

MAX_MEMBERS = 16
"""A JSON-RPC request has four top-level members; an id later than this is not looked for."""

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_decode_value = json.JSONDecoder().raw_decode


def request_id(data: bytes, *, complete: bool) -> Any:
    """The string or integer id of a single JSON-RPC request, else NO_ID.

    `complete` says `data` is the whole body; otherwise more of it may follow.
    Never raises: any input that is not a readable request gives NO_ID.
    """
    try:
        if complete:
            try:
                return _id_of(json.loads(data))
            except RecursionError:
                pass  # valid JSON may nest deeper than the parser goes: read its first members
        return _id_of(_leading_members(_text(data, complete)))
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return NO_ID


def _id_of(message: Any) -> Any:
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        return NO_ID
    value = message.get("id", NO_ID)
    return value if type(value) is str or type(value) is int else NO_ID  # bool is an int: not an id


def _text(data: bytes, complete: bool) -> str:
    """Decoded as json.loads decodes bytes; a character cut by the prefix's end is left out."""
    decoder = codecs.getincrementaldecoder(json.detect_encoding(data))()
    return decoder.decode(data, final=complete)


def _leading_members(text: str) -> dict[str, Any] | None:
    """`id` and `method` among the top-level members that have fully arrived."""
    i = _WHITESPACE.match(text).end()
    if not text.startswith("{", i):
        return None
    found: dict[str, Any] = {}
    i += 1
    for _ in range(MAX_MEMBERS):
        i = _WHITESPACE.match(text, i).end()
        if not text.startswith('"', i):
            break  # `}` of an empty object, the end of the prefix, or not JSON
        key, i = scanstring(text, i + 1)
        i = _WHITESPACE.match(text, i).end()
        if not text.startswith(":", i):
            break
        i = _WHITESPACE.match(text, i + 1).end()
        value, i = _decode_value(text, i)
        i = _WHITESPACE.match(text, i).end()
        if i >= len(text) or text[i] not in ",}":
            break  # the value may go on (a number), or the object is malformed
        if key == "id" or key == "method":
            found[key] = value
            if len(found) == 2:
                break
        if text[i] == "}":
            break
        i += 1
    return found
