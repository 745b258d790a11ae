"""The JSON-RPC id an error answer echoes, read from a body or its first bytes.

The oracle is `json.loads` on the complete document: whatever the extractor says
about a complete body must match it, and what it says about any prefix must be
either "no id" or the id of the complete document.
"""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import NO_ID
from shared.jsonrpc_id import MAX_MEMBERS, request_id


def oracle(document: bytes) -> Any:
    """A single JSON-RPC request's id as json.loads sees the whole document."""
    try:
        message = json.loads(document)
    except ValueError:
        return NO_ID
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        return NO_ID
    value = message.get("id", NO_ID)
    return value if type(value) in (str, int) else NO_ID


def _same(a: Any, b: Any) -> bool:
    return (a is NO_ID and b is NO_ID) or (a is not NO_ID and b is not NO_ID and type(a) is type(b) and a == b)


# (document, the id json.loads gives); DUPLICATES repeat a top-level key, which no prefix can judge
CORPUS: list[tuple[str, Any]] = [
    ('{"jsonrpc":"2.0","id":1,"method":"tools/list"}', 1),
    ('{"jsonrpc":"2.0","method":"tools/list","id":"abc"}', "abc"),
    ('{"method":"m","id":null}', NO_ID),
    ('{"method":"m","id":1.0}', NO_ID),
    ('{"method":"m","id":1e2}', NO_ID),
    ('{"method":"m","id":12e0}', NO_ID),
    ('{"method":"m","id":-0}', 0),
    ('{"method":"m","id":-17}', -17),
    ('{"method":"m","id":123456789012345678901234567890}', 123456789012345678901234567890),
    ('{"method":"m","id":true}', NO_ID),
    ('{"method":"m","id":false}', NO_ID),
    ('{"method":"m","id":{"a":1}}', NO_ID),
    ('{"method":"m","id":[1]}', NO_ID),
    ('{"method":"m","id":NaN}', NO_ID),
    ('{"method":"m","id":Infinity}', NO_ID),
    ('{"id":5,"result":{}}', NO_ID),
    ('{"id":5,"method":7}', NO_ID),
    ('{"id":5,"method":null}', NO_ID),
    ('{"method":"m","params":{"id":5}}', NO_ID),
    ('{"params":{"id":9,"method":"inner"},"method":"outer","id":3}', 3),
    ('{"params":[{"id":9}],"id":4,"method":"x"}', 4),
    ('{"method":"say \\"id\\":4","id":2}', 2),
    ('{"method":"x","params":"\\",\\"id\\":9,\\""}', NO_ID),
    ('{"method":"x","params":{"s":"}\\"id\\":9"}}', NO_ID),
    ('{"\\u0069d":6,"method":"x"}', 6),
    ('{"\\u006d\\u0065thod":"x","id":"\\u00e9\\ud83d\\ude00"}', "\u00e9\U0001f600"),
    ('{"id":"a\\"b\\\\c\\/d","method":"x"}', 'a"b\\c/d'),
    ('{"ID":6,"method":"x"}', NO_ID),
    ('{"id ":6,"method":"x"}', NO_ID),
    ('[{"jsonrpc":"2.0","id":1,"method":"x"}]', NO_ID),
    ('[]', NO_ID),
    ('"id"', NO_ID),
    ('1', NO_ID),
    ('null', NO_ID),
    ('{}', NO_ID),
    ('', NO_ID),
    ('   ', NO_ID),
    ('  \r\n\t{ "id" :\n 8 ,\t"method"\r: "x" }  \n', 8),
    ('{"id":1,"method":"x"} trailing', NO_ID),
    ('{"id":1,"method":"x"}{"id":2}', NO_ID),
    ('{"id":1,"method":"x",}', NO_ID),
    ('{"id":1,"method":"x"', NO_ID),
    ('{"id":01,"method":"x"}', NO_ID),
    ('{id:1,"method":"x"}', NO_ID),
    ("{'id':1,'method':'x'}", NO_ID),
    ('{"id":"tab\there","method":"x"}', NO_ID),
    ('{"id":"' + "x" * 5000 + '","method":"x"}', "x" * 5000),
    ('{"method":"x","params":{"deep":' + "[" * 200 + "]" * 200 + '},"id":"after"}', "after"),
]
DUPLICATES = [
    ('{"id":1,"method":"x","id":2}', 2),
    ('{"id":1,"method":"x","method":5}', NO_ID),
    ('{"method":5,"id":1,"method":"x"}', 1),
]


@pytest.mark.parametrize(("document", "expected"), CORPUS + DUPLICATES)
def test_a_complete_body_gives_what_json_loads_gives(document, expected):
    data = document.encode()
    assert _same(oracle(data), expected), "the corpus itself is wrong"
    assert _same(request_id(data, complete=True), expected)


def _valid(document: str) -> bool:
    try:
        json.loads(document)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(("document", "expected"), [(d, e) for d, e in CORPUS if _valid(d)])
def test_every_prefix_of_valid_json_gives_no_id_or_the_documents_id(document, expected):
    data = document.encode()
    for cut in range(len(data) + 1):
        found = request_id(data[:cut], complete=False)
        assert found is NO_ID or _same(found, expected), (cut, data[:cut], found)


@pytest.mark.parametrize(("document", "expected"), [(d, e) for d, e in CORPUS if e is not NO_ID])
def test_the_id_is_read_from_a_prefix_once_its_members_have_arrived(document, expected):
    data = document.encode()
    assert _same(request_id(data, complete=False), expected)
    # The same members followed by more of the object than the prefix holds: still readable.
    cut_short = data.rstrip()[:-1] + b', "more": {"big": "' + b"x" * 1000
    assert _same(request_id(cut_short, complete=False), expected)


def test_a_number_cut_at_the_end_of_a_prefix_is_never_taken_as_the_id():
    assert request_id(b'{"method":"x","id":12', complete=False) is NO_ID
    assert request_id(b'{"method":"x","id":12 ', complete=False) is NO_ID
    assert request_id(b'{"method":"x","id":12,', complete=False) == 12


def test_the_usual_order_gives_the_id_before_a_huge_params_arrives():
    prefix = b'{"jsonrpc":"2.0","id":"call-7","method":"tools/call","params":{"arguments":{"blob":"' + b"x" * 60000
    assert request_id(prefix, complete=False) == "call-7"


def test_an_id_after_params_that_do_not_fit_the_prefix_is_not_guessed():
    prefix = b'{"jsonrpc":"2.0","method":"tools/call","params":{"blob":"' + b"x" * 60000
    assert request_id(prefix, complete=False) is NO_ID


def test_only_the_first_members_are_read_so_a_hostile_prefix_costs_little():
    padding = "".join(f'"k{i}":0,' for i in range(MAX_MEMBERS))
    late = ('{' + padding + '"id":1,"method":"x"}').encode()
    assert request_id(late, complete=False) is NO_ID
    assert request_id(late, complete=True) == 1  # a complete body is parsed whole


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 30000,
        b'{"a":' * 30000,
        b'{"id":1,"method":"x","params":' + b"[" * 30000,
        b"\xff\xfe\x00garbage",
        b'{"id":"\xff","method":"x"}',
        b'{"id":1,"method":"x","params":"\xc3',
        b"\x00" * 10,
        b'{"id":' + b"9" * 5000 + b',"method":"x"}',
    ],
)
def test_hostile_bytes_never_raise(data):
    for complete in (True, False):
        request_id(data, complete=complete)


def test_valid_json_too_deep_for_the_parser_still_names_its_early_id():
    deep = b'{"jsonrpc":"2.0","id":1,"method":"x","params":' + b"[" * 30000 + b"]" * 30000 + b"}"
    assert request_id(deep, complete=True) == 1
    assert request_id(b"[" * 30000 + b"]" * 30000, complete=True) is NO_ID


def test_a_body_with_a_utf8_bom_is_read_like_json_loads_reads_it():
    data = b'\xef\xbb\xbf{"id":3,"method":"x"}'
    assert oracle(data) == 3
    assert request_id(data, complete=True) == 3 and request_id(data, complete=False) == 3


def test_a_multibyte_character_cut_by_the_prefix_does_not_hide_the_id():
    data = '{"id":"é","method":"x","params":"ééé"}'.encode()
    cut = data.index(b"\xc3\xa9\xc3\xa9") + 1  # inside the first é of params
    assert request_id(data[:cut], complete=False) == "é"


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["id", "method", "x", "jsonrpc"]) | st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
_ids = st.integers(min_value=-(10**20), max_value=10**20) | st.text(max_size=8) | _values
_methods = st.sampled_from(["tools/call", "ping"]) | _values
_members = st.fixed_dictionaries(
    {},
    optional={"jsonrpc": st.just("2.0"), "id": _ids, "method": _methods, "params": _values, "Id": _values, "": _values},
)
# Members in every order: where "id" comes relative to "params" is what a prefix depends on.
_messages = _members.flatmap(lambda members: st.permutations(list(members.items())).map(dict))


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(message=_messages, indent=st.sampled_from([None, 0, 2]), ascii_only=st.booleans(), data=st.data())
def test_generated_messages_and_every_prefix_agree_with_json_loads(message, indent, ascii_only, data):
    document = json.dumps(message, indent=indent, ensure_ascii=ascii_only).encode()
    expected = oracle(document)
    assert _same(request_id(document, complete=True), expected)
    assert _same(request_id(document, complete=False), expected)
    for cut in data.draw(st.lists(st.integers(min_value=0, max_value=len(document)), max_size=20)):
        found = request_id(document[:cut], complete=False)
        assert found is NO_ID or _same(found, expected), (cut, document[:cut])


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(data=st.binary(max_size=200), complete=st.booleans())
def test_arbitrary_bytes_never_raise(data, complete):
    request_id(data, complete=complete)
