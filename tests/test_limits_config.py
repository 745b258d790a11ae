"""The request limits in the gateway config: defaults, typed values, bad values named."""

from __future__ import annotations

import pytest

from shared.config import parse_config
from shared.errors import ConfigError

SERVERS = {"docs": {"url": "https://docs.internal.example/mcp", "anonymous": True}}


def test_limits_default_to_values_real_clients_never_reach():
    gateway = parse_config({"servers": SERVERS}).gateway
    assert gateway.max_request_head_bytes == 32768 and gateway.max_request_headers == 100
    assert gateway.request_head_timeout_seconds == 30
    assert gateway.body_idle_timeout_seconds == 60 and gateway.min_body_bytes_per_second == 240


def test_limits_are_read_from_the_gateway_section():
    gateway = parse_config({
        "servers": SERVERS,
        "gateway": {
            "maxRequestHeadBytes": 4096, "maxRequestHeaders": 20, "requestHeadTimeoutSeconds": 2.5,
            "bodyIdleTimeoutSeconds": 1.5, "minBodyBytesPerSecond": 1000,
        },
    }).gateway
    assert (gateway.max_request_head_bytes, gateway.max_request_headers) == (4096, 20)
    assert gateway.request_head_timeout_seconds == 2.5
    assert (gateway.body_idle_timeout_seconds, gateway.min_body_bytes_per_second) == (1.5, 1000)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("maxRequestHeadBytes", 100, "less than the minimum of 1024"),
        ("maxRequestHeadBytes", 1.5, "must be of type integer"),
        ("maxRequestHeaders", 0, "less than the minimum of 8"),
        ("requestHeadTimeoutSeconds", 0, "less than or equal to the minimum of 0"),
        ("requestHeadTimeoutSeconds", "30", "must be of type number"),
        ("bodyIdleTimeoutSeconds", -1, "less than or equal to the minimum of 0"),
        ("minBodyBytesPerSecond", 0, "less than the minimum of 1"),
    ],
)
def test_a_bad_limit_is_refused_naming_the_field(field, value, reason):
    with pytest.raises(ConfigError) as caught:
        parse_config({"servers": SERVERS, "gateway": {field: value}})
    assert caught.value.field == f"gateway.{field}"
    assert reason in str(caught.value)
