"""Public OpenAPI documents of realistic size become valid MCP tools, with stable names."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import jsonschema
import mcp_types as types
import pytest
from mcp.shared.tool_name_validation import validate_tool_name

from shared.config import OpenApiConfig
from shared.openapi.api import Tool
from shared.openapi.document import Document, parse_document
from shared.openapi.names import VALID
from shared.openapi.operations import build_tools

FIXTURES = Path(__file__).parent / "fixtures" / "openapi"


def _load(name: str) -> Document:
    data = (FIXTURES / name).read_bytes()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    return Document(parse_document(data, name))


@pytest.fixture(scope="module")
def github() -> Document:
    return _load("api.github.com.json.gz")


@pytest.fixture(scope="module")
def github_tools(github):
    return build_tools(github, OpenApiConfig("github.json", "https://api.github.example"))


def _operations(document: Document) -> list[tuple[str, str, dict]]:
    return [
        (method, path, op)
        for path, item in document.contents["paths"].items()
        for method, op in item.items()
        if method in ("get", "put", "post", "delete", "patch", "head")
    ]


def _assert_valid_mcp_tools(tools) -> None:
    names = [t.name for t in tools]
    assert len(names) == len(set(names))
    schemas: set[str] = set()  # each distinct schema checked against the meta-schema once
    for tool in tools:
        definition = Tool(tool).definition()
        wire = definition.model_dump(by_alias=True, exclude_none=True, mode="json")
        again = types.Tool.model_validate(wire)
        assert again.name == tool.name
        assert validate_tool_name(tool.name).is_valid and not validate_tool_name(tool.name).warnings
        assert VALID.fullmatch(tool.name)
        assert wire["description"]
        for schema in (wire["inputSchema"], wire.get("outputSchema")):
            if schema is None:
                continue
            assert schema["type"] == "object"
            schemas.add(json.dumps({k: v for k, v in schema.items() if k != "$defs"}, sort_keys=True))
            schemas.update(json.dumps(d, sort_keys=True) for d in schema.get("$defs", {}).values())
            # every $ref resolves inside the schema itself (no registry: as a client validates)
            for ref in _refs(schema):
                assert ref.startswith("#/$defs/") and ref[len("#/$defs/"):] in schema["$defs"], ref
        assert wire["inputSchema"]["additionalProperties"] is False
    for text in schemas:
        jsonschema.Draft202012Validator.check_schema(json.loads(text))


def _refs(value):
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str):
            yield value["$ref"]
        for item in value.values():
            yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def test_petstore3_converts_into_valid_tools():
    document = _load("petstore3.yaml")
    tools = build_tools(document, OpenApiConfig("petstore3.yaml", "https://petstore.example/v3"))
    assert len(tools) == len(_operations(document)) == 19
    _assert_valid_mcp_tools(tools)
    by_name = {t.name: t for t in tools}
    # the form-only operation and the raw upload are tools too
    upload = by_name["uploadFile"].input_schema["properties"]
    assert upload["body"]["contentEncoding"] == "base64" and upload["petId"]["type"] == "integer"
    add = by_name["addPet"]
    assert add.operation.body.media_type == "application/json"
    assert add.input_schema["$defs"]["Pet"]["properties"]["status"]["enum"] == ["available", "pending", "sold"]
    assert by_name["getPetById"].annotations["readOnlyHint"] is True
    # the API can answer XML or JSON: it is asked for JSON
    assert by_name["getPetById"].operation.accept == "application/json, application/xml;q=0.5"
    assert by_name["deletePet"].annotations["destructiveHint"] is True


def test_github_converts_into_valid_tools(github, github_tools):
    assert len(github_tools) == len(_operations(github)) == 761
    _assert_valid_mcp_tools(github_tools)


def test_github_operation_ids_that_break_the_rules_get_deterministic_names(github, github_tools):
    long_ids = {op["operationId"] for _, _, op in _operations(github) if len(op["operationId"]) > 64}
    assert len(long_ids) == 17 and all("/" in op_id for op_id in long_ids)
    by_id = {t.operation_id: t.name for t in github_tools}
    for op_id in long_ids:
        name = by_id[op_id]
        assert len(name) == 64 and name.startswith(op_id.replace("/", "_")[:55]), name
    # an id with a slash only: the slash becomes an underscore, nothing else changes
    assert by_id["repos/get"] == "repos_get"


def test_the_same_document_gives_the_same_names_whatever_order_its_paths_come_in(github, github_tools):
    contents = dict(github.contents)
    contents["paths"] = dict(reversed(list(contents["paths"].items())))
    again = build_tools(Document(contents), OpenApiConfig("github.json", "https://api.github.example"))
    assert {t.operation_id: t.name for t in again} == {t.operation_id: t.name for t in github_tools}


def test_a_selection_by_tag_and_operation_id(github):
    config = OpenApiConfig(
        "github.json", "https://api.github.example",
        include=_selection(tags={"issues"}, ids={"repos/get"}), exclude=_selection(ids={"issues/delete-comment"}),
    )
    tools = build_tools(github, config)
    ids = {t.operation_id for t in tools}
    assert "repos/get" in ids and "issues/create" in ids and "issues/delete-comment" not in ids
    assert all(i == "repos/get" or i.startswith("issues/") for i in ids)


def _selection(*, tags=(), ids=()):
    from shared.config import OperationSelection

    return OperationSelection(frozenset(ids), frozenset(tags))
