"""Arguments become an HTTP request whose shape no argument can change."""

from __future__ import annotations

import pytest

from shared.openapi.operations import Body, Operation, Parameter
from shared.openapi.request import ArgumentError, build_request


def p(argument, location, *, name=None, style=None, explode=None, as_json=False):
    style = style or ("form" if location == "query" else "simple")
    return Parameter(argument, name or argument, location, style, style == "form" if explode is None else explode, as_json)


def operation(path="/items/{id}", *parameters, body=None, method="GET"):
    return Operation(method, path, tuple(parameters), body, "body" if body else None)


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("plain", "/v1/items/plain"),
        ("a/b", "/v1/items/a%2Fb"),
        ("../admin", "/v1/items/..%2Fadmin"),
        ("x?y#z", "/v1/items/x%3Fy%23z"),
        ("{other}", "/v1/items/%7Bother%7D"),
        ("100%", "/v1/items/100%25"),
        ("é", "/v1/items/%C3%A9"),
        (42, "/v1/items/42"),
        (True, "/v1/items/true"),
        (["a", "b"], "/v1/items/a%2Cb"),
    ],
)
def test_a_path_value_stays_inside_its_segment(value, sent):
    request = build_request(operation("/items/{id}", p("id", "path")), {"id": value}, "https://api.example/v1/")
    assert request.url == "https://api.example" + sent
    assert request.path == sent[len("/v1"):]


@pytest.mark.parametrize("value", [".", "..", ""])
def test_a_path_value_that_servers_would_resolve_is_refused(value):
    with pytest.raises(ArgumentError, match="path parameter 'id'"):
        build_request(operation("/items/{id}", p("id", "path")), {"id": value}, "https://api.example")


def test_query_values_are_data_and_the_base_urls_query_comes_first():
    op = operation("/search", p("q", "query"), p("tags", "query"), p("ids", "query", explode=False),
                   p("f", "query", style="deepObject", explode=True), p("sep", "query", style="pipeDelimited", explode=False),
                   p("skip", "query"))
    request = build_request(op, {"q": "a&admin=true#x", "tags": ["x", "y z"], "ids": [1, 2], "f": {"status": "on"},
                                 "sep": ["a", "b"], "skip": None}, "https://api.example/?api-version=2024-01-01")
    assert request.url == (
        "https://api.example/search?api-version=2024-01-01&q=a%26admin%3Dtrue%23x&tags=x&tags=y%20z"
        "&ids=1%2C2&f%5Bstatus%5D=on&sep=a%7Cb"
    )


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\x00", "a\x7f"])
def test_a_header_value_cannot_start_a_header_of_its_own(value):
    with pytest.raises(ArgumentError, match="control characters"):
        build_request(operation("/a", p("trace", "header", name="X-Trace")), {"trace": value}, "https://api.example")


def test_a_header_value_outside_latin_1_is_refused_and_tabs_pass():
    op = operation("/a", p("trace", "header", name="X-Trace"))
    with pytest.raises(ArgumentError, match="Latin-1"):
        build_request(op, {"trace": "☃"}, "https://api.example")
    assert ("X-Trace", "a\tb") in build_request(op, {"trace": "a\tb"}, "https://api.example").headers


def test_bodies_by_media_type():
    json_op = operation("/a", body=Body("application/json", "json"), method="POST")
    request = build_request(json_op, {"body": {"name": "é", "n": [1]}}, "https://api.example")
    assert request.content == '{"name":"é","n":[1]}'.encode() and ("content-type", "application/json") in request.headers
    form = build_request(operation("/a", body=Body("application/x-www-form-urlencoded", "form")), {"body": {"a": "x&y", "b": True}}, "https://x")
    assert form.content == b"a=x%26y&b=true"
    raw = build_request(operation("/a", body=Body("application/octet-stream", "binary")), {"body": "AAEC"}, "https://x")
    assert raw.content == b"\x00\x01\x02"
    with pytest.raises(ArgumentError, match="base64"):
        build_request(operation("/a", body=Body("application/octet-stream", "binary")), {"body": "not base64!"}, "https://x")
    assert build_request(json_op, {}, "https://x").content is None


def test_a_parameter_described_as_json_is_sent_as_json_text():
    request = build_request(operation("/a", p("filter", "query", as_json=True)), {"filter": {"a": [1, "b"]}}, "https://x")
    assert request.url == "https://x/a?filter=%7B%22a%22%3A%5B1%2C%22b%22%5D%7D"
