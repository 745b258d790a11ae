"""Operations become tools: schemas, names, and start-up errors that name the operation and why."""

from __future__ import annotations

import json

import pytest

from shared.config import OpenApiConfig, OperationSelection
from shared.openapi import document as document_module
from shared.openapi.document import Document, DocumentError, parse_document
from shared.openapi.names import Wanted, assign
from shared.openapi.operations import build_tools

CONFIG = OpenApiConfig("doc.json", "https://api.example")


def doc(paths: dict, schemas: dict | None = None, version: str = "3.0.3") -> Document:
    contents = {"openapi": version, "info": {"title": "t", "version": "1"}, "paths": paths}
    if schemas is not None:
        contents["components"] = {"schemas": schemas}
    return Document(contents)


def one(document: Document, **config):
    tools = build_tools(document, OpenApiConfig("doc.json", "https://api.example", **config))
    assert len(tools) == 1
    return tools[0]


def op(**fields) -> dict:
    return {"responses": {"200": {"description": "ok"}}, **fields}


def test_recursive_schemas_become_defs_that_refer_to_themselves():
    node = {"type": "object", "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}}}
    tool = one(doc({"/nodes": {"post": op(operationId="addNode", requestBody={"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}})}}, {"Node": node}))
    schema = tool.input_schema
    assert schema["properties"]["body"] == {"$ref": "#/$defs/Node"}
    assert schema["$defs"]["Node"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    assert schema["required"] == ["body"]


def test_openapi_3_0_keywords_become_2020_12():
    schemas = {"Price": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "nullable": True, "example": 3, "x-internal": "yes"}}
    param = {"name": "max", "in": "query", "schema": {"$ref": "#/components/schemas/Price", "description": "Upper bound", "nullable": True}}
    tool = one(doc({"/items": {"get": op(operationId="list", parameters=[param])}}, schemas))
    assert tool.input_schema["properties"]["max"] == {"$ref": "#/$defs/Price", "description": "Upper bound"}
    assert tool.input_schema["$defs"]["Price"] == {"type": ["number", "null"], "exclusiveMinimum": 0}


def test_read_only_properties_are_not_asked_for_and_write_only_ones_not_promised():
    pet = {"type": "object", "required": ["id", "name"], "properties": {
        "id": {"type": "integer", "readOnly": True}, "name": {"type": "string"}, "secret": {"type": "string", "writeOnly": True}}}
    body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}
    answer = {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}
    tool = one(doc({"/pets": {"post": {"operationId": "add", "requestBody": body, "responses": {"201": answer}}}}, {"Pet": pet}))
    sent = tool.input_schema["$defs"]["Pet"]
    assert set(sent["properties"]) == {"name", "secret"} and sent["required"] == ["name"]
    received = tool.output_schema["$defs"]["Pet"]
    assert set(received["properties"]) == {"id", "name"}
    assert tool.output_schema["type"] == "object" and tool.output_schema["$ref"] == "#/$defs/Pet"


def test_parameters_clashing_across_locations_keep_apart_and_headers_the_gateway_owns_are_not_arguments():
    parameters = [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "id", "in": "query", "schema": {"type": "string"}},
        {"name": "filter[status]", "in": "query", "schema": {"type": "string"}},
        {"name": "X-Api-Key", "in": "header", "schema": {"type": "string"}},
        {"name": "Host", "in": "header", "schema": {"type": "string"}},
        {"name": "Authorization", "in": "header", "schema": {"type": "string"}},
        {"name": "session", "in": "cookie", "schema": {"type": "string"}},
        {"name": "X-Request-Id", "in": "header", "schema": {"type": "string"}},
    ]
    tools = build_tools(doc({"/things/{id}": {"get": op(operationId="get", parameters=parameters)}}), CONFIG, ["x-api-key"])
    properties = tools[0].input_schema["properties"]
    assert set(properties) == {"path_id", "query_id", "filter_status_", "X-Request-Id"}
    sent = {p.argument: (p.location, p.name) for p in tools[0].operation.parameters}
    assert sent["query_id"] == ("query", "id") and sent["path_id"] == ("path", "id")
    assert sent["filter_status_"] == ("query", "filter[status]")
    assert tools[0].input_schema["required"] == ["path_id"]


def test_names_clean_ones_win_then_made_valid_then_hashed():
    names = assign([
        Wanted("a/b", "GET /a/b"), Wanted("a_b", "GET /ab"), Wanted("x" * 70, "GET /x"),
        Wanted("dup", "GET /d1"), Wanted("dup", "GET /d2"), Wanted("ok.name", "GET /o"),
    ])
    assert names[1] == "a_b" and names[0].startswith("a_b_") and len(names[0]) == 12
    assert len(names[2]) == 64 and names[2].startswith("x" * 55 + "_")
    assert names[3] != names[4] and names[3].startswith("dup_") and names[4].startswith("dup_")
    assert names[5] == "ok_name"
    assert len(set(names)) == len(names)


def test_an_operation_without_an_id_is_named_by_method_and_path():
    tool = one(doc({"/users/{id}/keys": {"delete": op(parameters=[{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}])}}))
    assert tool.name == "delete_users_id_keys"
    assert tool.description == "DELETE /users/{id}/keys"
    assert tool.annotations == {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": True}


@pytest.mark.parametrize(
    ("paths", "reason"),
    [
        ({"/a/{id}": {"get": op(operationId="getA")}}, "operation 'getA' (GET /a/{id}): path parameter(s) id not declared"),
        ({"/a": {"get": op(operationId="m", parameters=[{"name": "p", "in": "path", "required": True, "style": "matrix", "schema": {}}])}},
         "operation 'm' (GET /a): path parameter 'p': style 'matrix' is not supported"),
        ({"/a": {"post": op(operationId="up", requestBody={"required": True, "content": {"multipart/form-data": {"schema": {"type": "object"}}}})}},
         "operation 'up' (POST /a): its required request body has no supported media type (multipart/form-data)"),
        ({"/a": {"get": op(operationId="ext", parameters=[{"name": "q", "in": "query", "schema": {"$ref": "https://evil.example/s.json#/x"}}])}},
         "operation 'ext' (GET /a): $ref 'https://evil.example/s.json#/x' points outside the document"),
        ({"/a": {"get": op(operationId="loop", parameters=[{"$ref": "#/components/parameters/p"}])}},
         "operation 'loop' (GET /a): $ref '#/components/parameters/p' points at nothing"),
        ({"/a": {"get": op(operationId="c", parameters=[{"name": "sid", "in": "cookie", "required": True, "schema": {}}])}},
         "required cookie parameter 'sid': cookie parameters are not supported"),
        ({"/a": {"get": op(operationId="bad", parameters=[{"name": "q", "in": "query", "schema": {"type": "strin"}}])}},
         "operation 'bad' (GET /a): its input schema, property 'q' is not valid JSON Schema"),
        ({"/a": {"get": op(operationId="h", parameters=[{"name": "Bad Header", "in": "header", "schema": {}}])}},
         "header parameter 'Bad Header' is not a valid header name"),
    ],
)
def test_an_operation_that_cannot_be_a_tool_is_a_start_up_error_naming_it(paths, reason):
    with pytest.raises(DocumentError) as caught:
        build_tools(doc(paths), CONFIG)
    assert reason in str(caught.value)
    assert "exclude" in str(caught.value)


def test_every_failing_operation_is_named_at_once_and_excluding_them_fixes_it():
    paths = {f"/x{i}": {"get": op(operationId=f"broken{i}", parameters=[{"name": "p", "in": "path", "required": True, "schema": {}}])} for i in range(3)}
    paths["/fine"] = {"get": op(operationId="fine")}
    with pytest.raises(DocumentError) as caught:
        build_tools(doc(paths), CONFIG)
    assert "3 operation(s)" in str(caught.value)
    assert all(f"'broken{i}'" in str(caught.value) for i in range(3))
    tools = build_tools(doc(paths), OpenApiConfig("d", "https://a", exclude=OperationSelection(frozenset({"broken0", "broken1", "broken2"}))))
    assert [t.name for t in tools] == ["fine"]


def test_a_parameter_that_refers_to_itself_is_an_error_not_a_hang():
    document = Document({"openapi": "3.0.0", "paths": {"/a": {"get": op(operationId="a", parameters=[{"$ref": "#/components/parameters/p"}])}},
                         "components": {"parameters": {"p": {"$ref": "#/components/parameters/p"}}}})
    with pytest.raises(DocumentError, match="refers to itself"):
        build_tools(document, CONFIG)


def test_include_and_exclude_name_only_what_exists():
    document = doc({"/a": {"get": op(operationId="a", tags=["t"])}})
    with pytest.raises(DocumentError, match="operationId 'typo'"):
        build_tools(document, OpenApiConfig("d", "https://a", include=OperationSelection(frozenset({"typo"}))))
    with pytest.raises(DocumentError, match="tag 'nope'"):
        build_tools(document, OpenApiConfig("d", "https://a", exclude=OperationSelection(tags=frozenset({"nope"}))))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b'{"swagger": "2.0", "paths": {}}', "swagger 2.0 is not supported"),
        (b'{"openapi": "4.0.0"}', "openapi '4.0.0' is not supported"),
        (b"[1, 2]", "not an OpenAPI document"),
        (b"openapi: [unclosed", "neither JSON nor YAML"),
    ],
)
def test_documents_that_are_not_openapi_3_are_refused(text, reason):
    with pytest.raises(DocumentError, match=reason):
        parse_document(text, "doc")


def test_a_yaml_alias_bomb_is_refused_before_it_is_expanded(monkeypatch):
    monkeypatch.setattr(document_module, "MAX_NODES", 100_000)  # the real bound takes seconds to reach
    lines = ["openapi: 3.0.0", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(10))}]" for i in range(1, 9)]
    with pytest.raises(DocumentError, match="more than 100000 values"):
        parse_document("\n".join(lines).encode(), "bomb.yaml")


def test_yaml_and_json_documents_read_the_same():
    contents = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {"/a": {"get": op(operationId="a")}}}
    import yaml

    assert parse_document(yaml.safe_dump(contents).encode(), "d.yaml") == parse_document(json.dumps(contents).encode(), "d.json")
