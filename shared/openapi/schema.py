"""OpenAPI Schema Objects as JSON Schema 2020-12, with `$ref`s kept as `$defs`.

A tool's schema names what it uses from the document's components in its own
`$defs` (`#/components/schemas/Pet` becomes `#/$defs/Pet`), so recursive schemas
stay finite and a schema used twice is written once. Each component is converted
once per document and direction (request or response), and reused by every tool.

What changes on the way (3.0 to 2020-12; 3.1 schemas already are 2020-12):
- `nullable: true` adds "null" to `type` (and to `enum`);
- boolean `exclusiveMinimum`/`exclusiveMaximum` become the numeric forms;
- in 3.0, siblings of `$ref` are ignored (as 3.0 says), bar `description`;
- OpenAPI-only keywords (`discriminator`, `xml`, `externalDocs`, `example`) and
  `x-` extensions are dropped, and `$id`/`$schema`/`$anchor` inside a schema too
  (a base URI there would change what `#/$defs/...` means);
- in a request, `readOnly` properties are left out; in a response, `writeOnly` ones.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Literal, Mapping

import jsonschema

from .document import Document, DocumentError
from .names import sanitize

DIALECT = "https://json-schema.org/draft/2020-12/schema"
Direction = Literal["request", "response"]

_SCHEMA = frozenset(
    {
        "items",
        "additionalProperties",
        "not",
        "if",
        "then",
        "else",
        "contains",
        "propertyNames",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)
_SCHEMA_LIST = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_MAP = frozenset({"properties", "patternProperties", "dependentSchemas"})
_DROPPED = frozenset(
    {
        "discriminator",
        "xml",
        "externalDocs",
        "example",
        "nullable",
        "$id",
        "$schema",
        "$anchor",
        "$dynamicAnchor",
        "$comment",
        "$defs",
        "definitions",
    }
)
_COMPONENT_PREFIX = "#/components/schemas/"


class SchemaConverter:
    """Converts a document's schemas; one per document, shared by all its operations."""

    def __init__(self, document: Document) -> None:
        self.document = document
        self._converted: dict[tuple[str, Direction], tuple[Any, frozenset[str]]] = {}
        self._keys: dict[str, str] = {}
        self._key_owner: dict[str, str] = {}

    def convert(self, schema: Any, direction: Direction) -> tuple[Any, frozenset[str]]:
        """The schema in 2020-12 form, and the `$ref`s (document pointers) it names directly."""
        refs: set[str] = set()
        return self._walk(schema, direction, refs), frozenset(refs)

    def defs(self, refs: frozenset[str], direction: Direction) -> dict[str, Any]:
        """`$defs` for a schema naming `refs`: every schema they reach, each under its key."""
        defs: dict[str, Any] = {}
        pending = sorted(refs)
        seen = set(pending)
        while pending:
            pointer = pending.pop()
            converted, more = self._component(pointer, direction)
            defs[self.key(pointer)] = converted
            for ref in sorted(more - seen):
                seen.add(ref)
                pending.append(ref)
        return dict(sorted(defs.items()))

    def key(self, pointer: str) -> str:
        """The `$defs` key of a document pointer: a component's own name when it can be."""
        key = self._keys.get(pointer)
        if key is None:
            name = pointer[len(_COMPONENT_PREFIX) :] if pointer.startswith(_COMPONENT_PREFIX) else pointer.lstrip("#/")
            key = sanitize(name.replace("~1", "/").replace("~0", "~"))
            if self._key_owner.get(key, pointer) != pointer:
                key = f"{key}_{len(self._key_owner)}"
            self._keys[pointer] = key
            self._key_owner[key] = pointer
        return key

    def _component(self, pointer: str, direction: Direction) -> tuple[Any, frozenset[str]]:
        cached = self._converted.get((pointer, direction))
        if cached is None:
            # References are recorded, not followed, so a schema naming itself is converted once.
            cached = self._converted[(pointer, direction)] = self.convert(self.document.lookup(pointer), direction)
            check_schema(cached[0], f"schema {pointer!r}")
        return cached

    def _walk(self, schema: Any, direction: Direction, refs: set[str]) -> Any:
        if isinstance(schema, bool):
            return schema
        if not isinstance(schema, dict):
            raise DocumentError(f"a schema is a {type(schema).__name__}, not an object")
        if "$ref" in schema:
            ref = schema["$ref"]
            self.document.lookup(ref)  # refuses external and dangling references
            refs.add(ref)
            out: dict[str, Any] = {"$ref": f"#/$defs/{self.key(ref)}"}
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            if self.document.is_3_0:
                siblings = {k: v for k, v in siblings.items() if k == "description"}
            if siblings:
                out.update(self._walk(siblings, direction, refs))
            return out
        out = {}
        for keyword, value in schema.items():
            if keyword in _DROPPED or keyword.startswith("x-"):
                continue
            if keyword in _SCHEMA:
                out[keyword] = self._walk(value, direction, refs)
            elif keyword in _SCHEMA_LIST:
                if not isinstance(value, list):
                    raise DocumentError(f"'{keyword}' is not a list")
                out[keyword] = [self._walk(item, direction, refs) for item in value]
            elif keyword in _SCHEMA_MAP:
                if not isinstance(value, dict):
                    raise DocumentError(f"'{keyword}' is not an object")
                out[keyword] = {name: self._walk(item, direction, refs) for name, item in value.items()}
            else:
                out[keyword] = value
        if self.document.is_3_0:
            _exclusive_bounds(out)
        if schema.get("nullable") is True:
            out = _nullable(out)
        if "properties" in out:
            _drop_one_way(out, direction)
        return out


def _exclusive_bounds(schema: dict[str, Any]) -> None:
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        flag = schema.get(exclusive)
        if isinstance(flag, bool):
            del schema[exclusive]
            if flag and bound in schema:
                schema[exclusive] = schema.pop(bound)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
    elif isinstance(kind, list):
        if "null" not in kind:
            schema["type"] = [*kind, "null"]
    else:
        return {"anyOf": [schema, {"type": "null"}]}
    if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    return schema


def _drop_one_way(schema: dict[str, Any], direction: Direction) -> None:
    """Properties that only travel the other way (readOnly ones are never sent, writeOnly never received)."""
    hidden = "readOnly" if direction == "request" else "writeOnly"
    properties = schema["properties"]
    dropped = [name for name, sub in properties.items() if isinstance(sub, dict) and sub.get(hidden) is True]
    if not dropped:
        return
    schema["properties"] = {name: sub for name, sub in properties.items() if name not in dropped}
    if isinstance(schema.get("required"), list):
        schema["required"] = [name for name in schema["required"] if name not in dropped]


def check_schema(schema: Any, label: str) -> None:
    """Valid JSON Schema 2020-12.

    Checking against the meta-schema costs milliseconds a schema, and a large document
    has thousands: a tool's `$defs` are checked one by one (once per document), and
    its properties once per distinct text (the same `owner` parameter recurs a hundred
    times in one API).
    """
    if isinstance(schema, Mapping) and isinstance(schema.get("properties"), Mapping):
        for name, sub in schema["properties"].items():
            _check_once(json.dumps(sub, sort_keys=True), f"{label}, property {name!r}")
        schema = {**schema, "properties": {name: {} for name in schema["properties"]}}
    if isinstance(schema, Mapping) and "$defs" in schema:
        schema = {k: v for k, v in schema.items() if k != "$defs"}
    _check_once(json.dumps(schema, sort_keys=True), label)


def _check_once(text: str, label: str) -> None:
    problem = _meta_schema_problem(text)
    if problem is not None:
        raise DocumentError(f"{label} is not valid JSON Schema {problem}")


@functools.lru_cache(maxsize=8192)
def _meta_schema_problem(text: str) -> str | None:
    try:
        jsonschema.Draft202012Validator.check_schema(json.loads(text))
    except jsonschema.SchemaError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        return f"at {where}: {error.message[:200]}"
    return None
