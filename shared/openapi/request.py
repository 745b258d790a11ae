"""A tool call's validated arguments as an HTTP request: path, query, headers, body.

Every value is encoded for where it goes, so no argument can change the request's
shape: path values are percent-encoded whole (a `/` stays inside its segment, and a
value of `.` or `..` is refused, since servers and proxies resolve those), query
names and values are encoded (an `&` or `#` in a value is data), and header values
with control characters are refused (a CR or LF would start a header of its own).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import quote, urlencode, urlsplit

from .operations import Operation, Parameter

_SEPARATORS = {"form": ",", "spaceDelimited": " ", "pipeDelimited": "|", "simple": ","}


class ArgumentError(Exception):
    """An argument cannot be sent as the operation needs it; the message is for the model."""


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    path: str
    """The operation's path with its parameters filled in (no base URL, no query)."""
    headers: list[tuple[str, str]]
    content: bytes | None


def build_request(operation: Operation, arguments: Mapping[str, Any], base_url: str) -> HttpRequest:
    path = operation.path
    query: list[tuple[str, str]] = []
    headers: list[tuple[str, str]] = [("accept", operation.accept)]
    for parameter in operation.parameters:
        if parameter.argument not in arguments or arguments[parameter.argument] is None:
            continue
        value = arguments[parameter.argument]
        if parameter.location == "path":
            path = path.replace("{" + parameter.name + "}", _path_value(parameter, value))
        elif parameter.location == "query":
            query += _query_pairs(parameter, value)
        else:
            headers.append((parameter.name, _header_value(parameter, value)))
    base = urlsplit(base_url)
    url = base_url.split("?", 1)[0].rstrip("/") + path
    # The base URL's own query (an api-version, say) comes first and stays.
    encoded = "&".join(filter(None, [base.query, urlencode(query, quote_via=quote, safe="")]))
    if encoded:
        url += "?" + encoded
    content = None
    body = operation.body
    if body is not None and operation.body_argument is not None and arguments.get(operation.body_argument) is not None:
        content = _body(body.kind, arguments[operation.body_argument])
        headers.append(("content-type", body.media_type))
    return HttpRequest(operation.method, url, path, headers, content)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _flat(parameter: Parameter, value: Any, separator: str = ",") -> str:
    """A value as the `simple` style writes it (arrays and objects joined by commas)."""
    if parameter.as_json:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, list):
        return separator.join(_scalar(v) for v in value)
    if isinstance(value, dict):
        pairs = [(k, _scalar(v)) for k, v in value.items()]
        if parameter.explode:
            return separator.join(f"{k}={v}" for k, v in pairs)
        return separator.join(part for pair in pairs for part in pair)
    return _scalar(value)


def _path_value(parameter: Parameter, value: Any) -> str:
    text = _flat(parameter, value)
    if text in ("", ".", ".."):
        raise ArgumentError(f"path parameter {parameter.argument!r} cannot be {text!r}")
    return quote(text, safe="")


def _query_pairs(parameter: Parameter, value: Any) -> list[tuple[str, str]]:
    name = parameter.name
    if parameter.as_json or not isinstance(value, (list, dict)):
        return [(name, _flat(parameter, value))]
    if isinstance(value, list):
        if parameter.style == "form" and parameter.explode:
            return [(name, _scalar(v)) for v in value]
        return [(name, _flat(parameter, value, _SEPARATORS[parameter.style]))]
    if parameter.style == "deepObject":
        return [(f"{name}[{k}]", _scalar(v)) for k, v in value.items()]
    if parameter.explode:
        return [(k, _scalar(v)) for k, v in value.items()]
    return [(name, _flat(parameter, value))]


def _header_value(parameter: Parameter, value: Any) -> str:
    text = _flat(parameter, value)
    if any(ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F for c in text):
        raise ArgumentError(f"header parameter {parameter.argument!r} cannot hold control characters")
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        raise ArgumentError(f"header parameter {parameter.argument!r} must be Latin-1 text") from None
    return text


def _body(kind: str, value: Any) -> bytes:
    if kind == "json":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    if kind == "form":
        if not isinstance(value, dict):
            raise ArgumentError("the form body must be an object")
        return urlencode([(k, _scalar(v)) for k, v in value.items()], quote_via=quote, safe="").encode()
    if kind == "text":
        return _scalar(value).encode()
    try:
        return base64.b64decode(_scalar(value), validate=True)
    except (binascii.Error, ValueError):
        raise ArgumentError("the body must be base64") from None
