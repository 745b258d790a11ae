"""Reading an OpenAPI document (file or URL, JSON or YAML) and looking up its `$ref`s.

A document is read once, at start-up, within bounds: at most MAX_DOCUMENT_BYTES,
and at most MAX_NODES values once parsed (YAML aliases could otherwise make a small
file stand for an enormous tree). Only references inside the document are
followed (`#/components/...`): an external `$ref` would make start-up fetch
whatever a document names, so it is refused with a hint to bundle the document.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import httpx
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable

MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
MAX_NODES = 20_000_000
FETCH_TIMEOUT_SECONDS = 30.0
_BASE_URI = "urn:mcp-gateway:openapi-document"


class DocumentError(Exception):
    """The document cannot be read, or cannot be turned into tools; the message says why."""


async def read_document(source: str, http: httpx.AsyncClient | None) -> Mapping[str, Any]:
    """The parsed document from a file path or an http(s) URL (fetched with `http`)."""
    if source.startswith(("http://", "https://")):
        if http is None:  # pragma: no cover - the gateway always passes its client
            raise DocumentError("no HTTP client to fetch the document with")
        data = await _fetch(source, http)
    else:
        data = _read_file(Path(source))
    return parse_document(data, shown(source))


def shown(source: str) -> str:
    """A document's source as messages name it: a URL without its query (which may carry a token)."""
    return source.split("?", 1)[0]


def _read_file(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise DocumentError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"{str(path)!r} is larger than {MAX_DOCUMENT_BYTES} bytes")
    return data


async def _fetch(url: str, http: httpx.AsyncClient) -> bytes:
    try:
        async with http.stream("GET", url, timeout=FETCH_TIMEOUT_SECONDS) as response:
            if response.status_code != 200:
                raise DocumentError(f"fetching {shown(url)} answered HTTP {response.status_code}")
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > MAX_DOCUMENT_BYTES:
                    raise DocumentError(f"{shown(url)} is larger than {MAX_DOCUMENT_BYTES} bytes")
            return bytes(data)
    except httpx.HTTPError as exc:
        raise DocumentError(f"cannot fetch {shown(url)} ({type(exc).__name__})") from None


def parse_document(data: bytes, source: str) -> Mapping[str, Any]:
    """JSON, else YAML (JSON is YAML too, but the JSON parser is much faster)."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        document = _parse_yaml(data, source)
    if not isinstance(document, dict):
        raise DocumentError(f"{source} is not an OpenAPI document (not an object)")
    _count_nodes(document, source)
    version = document.get("openapi")
    if not isinstance(version, str) or not version.startswith(("3.0.", "3.1.")):
        found = f"swagger {document['swagger']}" if "swagger" in document else f"openapi {version!r}"
        raise DocumentError(f"{source}: {found} is not supported: give an OpenAPI 3.0 or 3.1 document")
    if not isinstance(document.get("paths", {}), dict):
        raise DocumentError(f"{source}: 'paths' is not an object")
    return document


def _parse_yaml(data: bytes, source: str) -> Any:
    import yaml  # only for YAML documents

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(data, Loader=loader)  # noqa: S506 - a safe loader: plain data only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise DocumentError(f"{source} is neither JSON nor YAML{where}") from None


def _count_nodes(document: Any, source: str) -> None:
    """Bound the tree as walked (a shared YAML alias counts each time it is reached)."""
    budget = MAX_NODES
    stack = [document]
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:
            raise DocumentError(f"{source} has more than {MAX_NODES} values (YAML aliases included)")
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


class Document:
    """A parsed document and its references."""

    def __init__(self, contents: Mapping[str, Any]) -> None:
        self.contents = contents
        self.is_3_0 = str(contents.get("openapi", "")).startswith("3.0.")
        self._resolver = Registry().with_resource(_BASE_URI, Resource.opaque(contents)).resolver(_BASE_URI)

    def lookup(self, ref: Any) -> Any:
        """What a `$ref` inside the document points at."""
        if not isinstance(ref, str):
            raise DocumentError(f"$ref {ref!r} is not a string")
        if not ref.startswith("#"):
            raise DocumentError(f"$ref {ref!r} points outside the document: bundle it into one file first")
        try:
            return self._resolver.lookup(ref).contents
        except Unresolvable:
            # (the library's own message quotes the whole document)
            raise DocumentError(f"$ref {ref!r} points at nothing in the document") from None

    def deref(self, value: Any) -> Any:
        """A Reference Object followed to what it names (references to references included)."""
        seen: list[str] = []
        while isinstance(value, dict) and "$ref" in value:
            ref = value["$ref"]
            if ref in seen:
                raise DocumentError(f"$ref {ref!r} refers to itself")
            seen.append(ref)
            value = self.lookup(ref)
        return value
