"""The JSON-RPC messages of a request body, read strictly enough that the gateway and
the backend cannot disagree about what was asked.

Refused (400) rather than guessed at: a body that is not UTF-8 JSON, a key that
appears twice in any object (parsers disagree on which copy wins), anything but an
object or a non-empty array of objects, a non-string method, and a method that is
one the policy governs in another spelling (case, width, surrounding space): a
lenient backend could take `Tools/Call` as `tools/call`.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import Any

from ..config.policy import GovernedMethod
from ..errors import BadRequest

LIST_METHODS = frozenset({"tools/list", "resources/list", "prompts/list"})

_NAMED: dict[str, tuple[GovernedMethod, str]] = {
    "tools/call": ("tools/call", "name"),
    "prompts/get": ("prompts/get", "name"),
    "resources/read": ("resources/read", "uri"),
    # Subscribing to a resource tells of its changes: the same rule as reading it.
    "resources/subscribe": ("resources/read", "uri"),
    "resources/unsubscribe": ("resources/read", "uri"),
}
_KNOWN = frozenset(_NAMED) | LIST_METHODS | {"completion/complete", "resources/templates/list"}


@dataclass(frozen=True, slots=True)
class Call:
    """One governed call in the body: the rule's method, and the name or URI it names."""

    method: GovernedMethod
    name: Any
    """As sent: not necessarily a string (then it is denied)."""
    id: Any
    """The JSON-RPC id, or None for a notification."""


@dataclass(frozen=True, slots=True)
class Messages:
    calls: tuple[Call, ...]
    lists: bool
    """Some message asks for a list the answer of which must be filtered."""
    batch: bool
    methods: tuple[str, ...]


def read_messages(payload: bytes) -> Messages:
    try:
        document = json.loads(payload.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError):  # UnicodeDecodeError, JSONDecodeError, _DuplicateKey
        raise BadRequest("the request body is not a JSON-RPC message (UTF-8 JSON, each key once)") from None
    batch = isinstance(document, list)
    messages = document if batch else [document]
    if not messages or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("the request body is not a JSON-RPC message or a batch of them")
    calls: list[Call] = []
    methods: list[str] = []
    lists = False
    for message in messages:
        if "method" not in message:
            continue  # the client's answer to a request of the server's
        method = message["method"]
        if type(method) is not str:
            raise BadRequest("a JSON-RPC method must be a string")
        if method not in _KNOWN and _canonical(method) in _KNOWN:
            raise BadRequest(f"method {_canonical(method)!r} must be spelled exactly so")
        methods.append(method)
        lists = lists or method in LIST_METHODS
        call = _call(method, message.get("params"), message.get("id"))
        if call is not None:
            calls.append(call)
    return Messages(tuple(calls), lists, batch, tuple(methods))


def _call(method: str, params: Any, id: Any) -> Call | None:
    if method == "completion/complete":
        # Completing a prompt's or a resource template's arguments is using it.
        ref = params.get("ref") if isinstance(params, dict) else None
        if isinstance(ref, dict) and ref.get("type") == "ref/prompt":
            return Call("prompts/get", ref.get("name"), id)
        if isinstance(ref, dict) and ref.get("type") == "ref/resource":
            return Call("resources/read", ref.get("uri"), id)
        return Call("prompts/get", None, id)  # a ref of no known kind: denied
    named = _NAMED.get(method)
    if named is None:
        return None
    governed, key = named
    return Call(governed, params.get(key) if isinstance(params, dict) else None, id)


def _canonical(method: str) -> str:
    return unicodedata.normalize("NFKC", method).strip().casefold()


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKey("a key appears twice")
    return result
