"""From a document's operations to tool definitions: one tool per operation.

A tool's arguments are the operation's path, query and header parameters, each
under its own name (made valid and unique by names.py, a clash between locations
resolved as `<in>_<name>`), and the request body, if any, under `body`. The input
schema is closed (`additionalProperties: false`), so a misspelt argument is an error
the model can read and correct rather than a parameter silently not sent.

An operation that cannot be served faithfully is a start-up error naming it and
why; every such operation is listed at once, so one edit of `exclude` fixes them.
Header parameters the gateway owns (the backend credential's header, framing and
hop-by-hop headers) are not arguments: a caller can never set them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping

from ..config.openapi import OpenApiConfig
from .document import Document, DocumentError
from .names import Wanted, assign
from .schema import DIALECT, SchemaConverter, check_schema

METHODS = ("get", "put", "post", "delete", "patch", "head")
"""Operations that become tools (OPTIONS and TRACE describe the transport, not the API)."""

MAX_DESCRIPTION = 4000
BODY_ARGUMENT = "body"

Location = Literal["path", "query", "header"]
BodyKind = Literal["json", "form", "text", "binary"]

_IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})
"""Header parameters the OpenAPI specification says to ignore."""
_GATEWAY_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "cookie",
        "expect",
        "accept-encoding",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
    }
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TEMPLATE = re.compile(r"\{([^{}]+)\}")
_STYLES: Mapping[str, tuple[str, ...]] = {
    "path": ("simple",),
    "query": ("form", "spaceDelimited", "pipeDelimited", "deepObject"),
    "header": ("simple",),
}


@dataclass(frozen=True)
class Parameter:
    argument: str
    """Its name among the tool's arguments."""
    name: str
    """Its name in the HTTP request."""
    location: Location
    style: str
    explode: bool
    as_json: bool = False
    """Sent as JSON text (a parameter described by `content: application/json`)."""


@dataclass(frozen=True)
class Body:
    media_type: str
    kind: BodyKind


@dataclass(frozen=True)
class Operation:
    """How one tool call becomes an HTTP request."""

    method: str
    path: str
    parameters: tuple[Parameter, ...]
    body: Body | None
    body_argument: str | None = None
    accept: str = "*/*"
    """The media types the operation documents for its answers, JSON first."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str | None
    description: str
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any] | None
    annotations: Mapping[str, Any]
    operation: Operation
    operation_id: str | None


@dataclass(frozen=True)
class _Found:
    method: str
    path: str
    raw: Mapping[str, Any]
    path_parameters: list[Any]

    @property
    def label(self) -> str:
        op_id = self.raw.get("operationId")
        where = f"{self.method.upper()} {self.path}"
        return f"operation {op_id!r} ({where})" if isinstance(op_id, str) else f"operation {where}"


def build_tools(document: Document, config: OpenApiConfig, reserved_headers: Iterable[str] = ()) -> list[ToolSpec]:
    """Every selected operation as a tool, or a DocumentError listing each operation that cannot be one."""
    found = _select(document, config)
    names = assign([_wanted_name(op) for op in found])
    converter = SchemaConverter(document)
    reserved = _GATEWAY_HEADERS | {h.lower() for h in reserved_headers}
    tools: list[ToolSpec] = []
    problems: list[str] = []
    for op, name in zip(found, names):
        try:
            tools.append(_tool(document, converter, op, name, reserved))
        except DocumentError as error:
            problems.append(f"{op.label}: {error}")
    if problems:
        listed = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise DocumentError(
            f"{len(problems)} operation(s) cannot be served as tools (leave them out with openapi.exclude): {listed}"
        )
    return tools


def _select(document: Document, config: OpenApiConfig) -> list[_Found]:
    everything: list[_Found] = []
    for path, item in document.contents.get("paths", {}).items():
        item = document.deref(item)
        if not isinstance(item, dict):
            raise DocumentError(f"path {path!r} is not an object")
        if not isinstance(path, str) or not path.startswith("/"):
            raise DocumentError(f"path {path!r} does not start with '/'")
        for method in METHODS:
            if isinstance(item.get(method), dict):
                everything.append(_Found(method, path, item[method], list(item.get("parameters", []))))
    ids = {op.raw.get("operationId") for op in everything}
    tags = {tag for op in everything for tag in _tags(op)}
    for label, selection in (("include", config.include), ("exclude", config.exclude)):
        if selection is None:
            continue
        for missing in sorted(selection.operation_ids - ids):
            raise DocumentError(f"openapi.{label} names operationId {missing!r}, which the document does not have")
        for missing in sorted(selection.tags - tags):
            raise DocumentError(f"openapi.{label} names tag {missing!r}, which no operation has")
    selected = [op for op in everything if config.selects(op.raw.get("operationId"), _tags(op))]
    if not selected:
        raise DocumentError("no operation is selected: the document has none, or include/exclude leave none")
    return selected


def _tags(op: _Found) -> list[str]:
    tags = op.raw.get("tags", [])
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _wanted_name(op: _Found) -> Wanted:
    identity = f"{op.method.upper()} {op.path}"
    op_id = op.raw.get("operationId")
    preferred = op_id if isinstance(op_id, str) and op_id else f"{op.method}_{op.path.strip('/')}"
    return Wanted(preferred, identity)


def _tool(document: Document, converter: SchemaConverter, op: _Found, name: str, reserved: frozenset[str]) -> ToolSpec:
    raw_parameters = _parameters(document, op)
    kept = [p for p in raw_parameters if _is_argument(p, reserved)]
    arguments = assign(
        [Wanted(p["name"], f"{p['in']}:{p['name']}", f"{p['in']}_{p['name']}") for p in kept]
        + ([Wanted(BODY_ARGUMENT, "body", "request_body")] if "requestBody" in op.raw else [])
    )
    properties: dict[str, Any] = {}
    required: list[str] = []
    refs: set[str] = set()
    parameters = []
    for p, argument in zip(kept, arguments):
        parameter, schema, needed = _parameter(p, argument, converter, refs)
        parameters.append(parameter)
        properties[argument] = schema
        if needed:
            required.append(argument)
    _check_template(op.path, parameters)

    body = None
    if "requestBody" in op.raw:
        request_body = document.deref(op.raw["requestBody"])
        chosen = _choose_body(request_body)
        if chosen is not None:
            body, schema = chosen
            if body.kind == "binary":
                converted: Any = {"type": "string", "contentEncoding": "base64", "description": "The body, base64-encoded."}
            else:
                converted, body_refs = converter.convert(schema, "request")
                refs |= body_refs
                if isinstance(request_body.get("description"), str) and isinstance(converted, dict):
                    converted = {"description": request_body["description"], **converted}
            properties[arguments[-1]] = converted
            if request_body.get("required") is True:
                required.append(arguments[-1])
        elif request_body.get("required") is True:
            media = ", ".join(sorted(request_body.get("content", {}))) or "none"
            raise DocumentError(f"its required request body has no supported media type ({media})")

    input_schema: dict[str, Any] = {"$schema": DIALECT, "type": "object", "properties": properties}
    if required:
        input_schema["required"] = required
    input_schema["additionalProperties"] = False
    if refs:
        input_schema["$defs"] = converter.defs(frozenset(refs), "request")
    output_schema = _output_schema(document, converter, op.raw)
    for label, schema in (("input", input_schema), ("output", output_schema)):
        if schema is not None:
            check_schema(schema, f"its {label} schema")

    summary = op.raw.get("summary") if isinstance(op.raw.get("summary"), str) else None
    op_id = op.raw.get("operationId") if isinstance(op.raw.get("operationId"), str) else None
    return ToolSpec(
        name=name,
        title=summary.strip() or None if summary else None,
        description=_description(op),
        input_schema=input_schema,
        output_schema=output_schema,
        annotations=_annotations(op.method, summary),
        operation=Operation(
            op.method.upper(), op.path, tuple(parameters), body, arguments[-1] if body else None, _accept(document, op.raw)
        ),
        operation_id=op_id,
    )


def _parameters(document: Document, op: _Found) -> list[Mapping[str, Any]]:
    """Path-level parameters, overridden by operation-level ones of the same name and location."""
    merged: dict[tuple[str, str], Mapping[str, Any]] = {}
    for raw in [*op.path_parameters, *op.raw.get("parameters", [])]:
        p = document.deref(raw)
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or p.get("in") not in _STYLES | {"cookie": ()}:
            raise DocumentError(f"a parameter has no valid name and location: {str(raw)[:80]}")
        merged[(p["in"], p["name"] if p["in"] != "header" else p["name"].lower())] = p
    return list(merged.values())


def _is_argument(p: Mapping[str, Any], reserved: frozenset[str]) -> bool:
    if p["in"] == "cookie":
        if p.get("required") is True:
            raise DocumentError(f"required cookie parameter {p['name']!r}: cookie parameters are not supported")
        return False
    if p["in"] == "header":
        if not _TOKEN.fullmatch(p["name"]):
            raise DocumentError(f"header parameter {p['name']!r} is not a valid header name")
        lower = p["name"].lower()
        if lower in _IGNORED_HEADERS or lower in reserved:
            return False
    return True


def _parameter(
    p: Mapping[str, Any], argument: str, converter: SchemaConverter, refs: set[str]
) -> tuple[Parameter, Any, bool]:
    location = p["in"]
    style = p.get("style", "simple" if location in ("path", "header") else "form")
    if style not in _STYLES[location]:
        raise DocumentError(f"{location} parameter {p['name']!r}: style {style!r} is not supported")
    as_json = False
    if "content" in p:
        content = p["content"]
        if not isinstance(content, dict) or len(content) != 1:
            raise DocumentError(f"parameter {p['name']!r}: 'content' must name exactly one media type")
        media, entry = next(iter(content.items()))
        as_json = _is_json(media)
        schema = entry.get("schema", {}) if isinstance(entry, dict) else {}
    else:
        schema = p.get("schema", {})
    converted, found = converter.convert(schema, "request")
    refs |= found
    if isinstance(p.get("description"), str) and isinstance(converted, dict) and "description" not in converted:
        converted = {"description": p["description"], **converted}
    if p.get("deprecated") is True and isinstance(converted, dict):
        converted = {**converted, "deprecated": True}
    parameter = Parameter(argument, p["name"], location, style, bool(p.get("explode", style == "form")), as_json)
    return parameter, converted, location == "path" or p.get("required") is True


def _check_template(path: str, parameters: list[Parameter]) -> None:
    declared = {p.name for p in parameters if p.location == "path"}
    named = set(_TEMPLATE.findall(path))
    if named - declared:
        raise DocumentError(f"path parameter(s) {', '.join(sorted(named - declared))} not declared")
    if declared - named:
        raise DocumentError(f"path parameter(s) {', '.join(sorted(declared - named))} not in the path")


def _is_json(media_type: str) -> bool:
    essence = media_type.split(";", 1)[0].strip().lower()
    return essence == "application/json" or essence.endswith("+json")


def _body_kind(media_type: str) -> BodyKind | None:
    essence = media_type.split(";", 1)[0].strip().lower()
    if _is_json(essence):
        return "json"
    if essence == "application/x-www-form-urlencoded":
        return "form"
    if essence.startswith("text/"):
        return "text"
    if essence == "application/octet-stream" or essence.startswith(("image/", "audio/", "video/")):
        return "binary"
    return None


_PREFERENCE: tuple[BodyKind, ...] = ("json", "form", "text", "binary")


def _choose_body(request_body: Any) -> tuple[Body, Any] | None:
    """The body media type a tool sends: JSON first, then a form, text, raw bytes."""
    content = request_body.get("content") if isinstance(request_body, dict) else None
    if not isinstance(content, dict):
        raise DocumentError("its request body has no 'content'")
    kinds = {media: _body_kind(media) for media in content}
    for kind in _PREFERENCE:
        for media, found in kinds.items():
            if found == kind:
                entry = content[media] if isinstance(content[media], dict) else {}
                schema = entry.get("schema", {"type": "string"} if kind in ("text", "binary") else {})
                if kind == "form" and not _maybe_object(schema):
                    continue
                return Body(media, kind), schema
    return None


def _maybe_object(schema: Any) -> bool:
    return isinstance(schema, dict) and (schema.get("type") in (None, "object") or "$ref" in schema)


def _output_schema(document: Document, converter: SchemaConverter, raw: Mapping[str, Any]) -> dict[str, Any] | None:
    """The result's schema, when the operation's one success answer is a JSON object."""
    responses = raw.get("responses", {})
    if not isinstance(responses, dict):
        raise DocumentError("'responses' is not an object")
    successes = [document.deref(r) for code, r in responses.items() if str(code).startswith("2")]
    if len(successes) != 1 or not isinstance(successes[0], dict):
        return None
    content = successes[0].get("content", {})
    json_entries = [entry for media, entry in content.items() if _is_json(media)] if isinstance(content, dict) else []
    if not json_entries or not isinstance(json_entries[0], dict) or "schema" not in json_entries[0]:
        return None
    schema = json_entries[0]["schema"]
    target = document.deref(schema)
    if not isinstance(target, dict) or target.get("type") != "object" or target.get("nullable") is True:
        return None
    converted, refs = converter.convert(schema, "response")
    output = {"$schema": DIALECT, "type": "object", **converted}
    if refs:
        output["$defs"] = converter.defs(refs, "response")
    return output


def _accept(document: Document, raw: Mapping[str, Any]) -> str:
    """An Accept header from the documented answers: a server that could answer XML or JSON answers JSON."""
    media: list[str] = []
    responses = raw.get("responses", {})
    for response in responses.values() if isinstance(responses, dict) else ():
        content = document.deref(response).get("content", {}) if isinstance(document.deref(response), dict) else {}
        for name in content if isinstance(content, dict) else ():
            if isinstance(name, str) and _TOKEN.fullmatch(name.split("/", 1)[0]) and name not in media and "," not in name:
                media.append(name)
    if not media:
        return "*/*"
    ranked = [m for m in media if _is_json(m)] + [f"{m};q=0.5" for m in media if not _is_json(m)]
    return ", ".join(ranked)


def _description(op: _Found) -> str:
    summary = op.raw.get("summary") if isinstance(op.raw.get("summary"), str) else ""
    detail = op.raw.get("description") if isinstance(op.raw.get("description"), str) else ""
    parts = [summary.strip()] if summary.strip() else []
    if detail.strip() and detail.strip() != summary.strip():
        parts.append(detail.strip())
    text = "\n\n".join(parts) or f"{op.method.upper()} {op.path}"
    if op.raw.get("deprecated") is True:
        text = "Deprecated. " + text
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


def _annotations(method: str, summary: str | None) -> dict[str, Any]:
    """Hints from HTTP semantics: GET and HEAD only read; DELETE destroys; PUT and DELETE are idempotent.

    POST, PUT and PATCH say nothing about destruction: clients then assume the worst.
    """
    hints: dict[str, Any] = {}
    if summary and summary.strip():
        hints["title"] = summary.strip()
    hints["readOnlyHint"] = method in ("get", "head")
    if method == "delete":
        hints["destructiveHint"] = True
    if method in ("put", "delete"):
        hints["idempotentHint"] = True
    return hints
