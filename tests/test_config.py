"""Config validation: bad documents fail at start-up, naming the field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from shared.config import SCHEMA_PATH, load_config_from_env, load_config_text, parse_config
from shared.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"servers": {"docs": {"url": "https://docs.internal.example/mcp", "anonymous": True}}}
OPENAPI = {"document": "specs/api.yaml", "baseUrl": "https://api.internal.example/v2"}


def _check(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "gateway.json"
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "shared", "config", "check", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize(
    ("document", "field", "reason"),
    [
        ({"servers": {"docs": {"url": "https://x/mcp", "anonymous": True, "urll": "y"}}}, "servers.docs", "unknown field 'urll'"),
        ({"servers": {"docs": {"anonymous": True}}}, "servers.docs.url", "is required"),
        ({"servers": {"docs": {"url": "https://x/mcp"}}}, "servers.docs.anonymous", "no inbound auth"),
        ({"servers": {"docs": {"url": "https://x/mcp", "anonymous": False}}}, "servers.docs.anonymous", "no inbound auth"),
        ({"servers": {"docs": {"url": "ftp://x/mcp", "anonymous": True}}}, "servers.docs.url", "not an http(s) URL"),
        ({"servers": {"docs": {"url": "https://u:p@x/mcp", "anonymous": True}}}, "servers.docs.url", "credentials in the URL"),
        ({"servers": {}}, "servers", "should be non-empty"),
        ({}, "servers", "is required"),
        ({"servers": {"bad name": {"url": "https://x", "anonymous": True}}}, "servers", "invalid name 'bad name'"),
        ({"servers": {"d": {"url": "https://x", "anonymous": True, "timeouts": {"read": 0}}}}, "servers.d.timeouts.read", "0"),
        ({"servers": {"d": {"url": "https://x", "anonymous": True, "headers": {"Host": "evil"}}}}, "servers.d.headers.Host", "cannot be set"),
        ({"servers": {"d": {"url": "https://x", "anonymous": True, "messageUrl": "https://x/m"}}}, "servers.d.messageUrl", "only applies to transport 'sse'"),
        ({"servers": GOOD["servers"], "gateway": {"keepAliveSeconds": 300}}, "gateway.keepAliveSeconds", "300"),
        ({"servers": GOOD["servers"], "extra": 1}, "'extra'", "unknown field"),
        ({"servers": {"d": {"url": "https://x", "auth": {"mode": "any"}}}}, "servers.d.auth", "declares no method"),
        ({"servers": {"d": {"url": "https://x", "auth": {"entra": {"audiences": ["a"]}}}}},
         "servers.d.auth.entra.tenantId", "is required"),
        ({"servers": {"d": {"url": "https://x", "auth": {"entra": {"tenantId": "t", "audiences": ["a"], "tenant": 1}}}}},
         "servers.d.auth.entra", "unknown field 'tenant'"),
        ({"servers": {"d": {"url": "https://x", "anonymous": True, "auth": {"subscriptionKey": {}}}}},
         "servers.d.anonymous", "cannot also be anonymous"),
        ({"servers": {"d": {"url": "https://x", "auth": {"subscriptionKey": {}}}},
          "subscriptions": {"alice": {"servers": ["nope"], "primaryKey": {"sha256": "0" * 64}}}},
         "subscriptions.alice.servers", "no server named 'nope'"),
        ({"servers": {"d": {"url": "https://x", "auth": {"subscriptionKey": {}}}},
          "subscriptions": {"alice": {"servers": ["d"], "primaryKey": {"sha256": "not-hex"}}}},
         "subscriptions.alice.primaryKey", "documented forms"),
        ({"servers": {"d": {"url": "https://x", "auth": {"subscriptionKey": {}}}},
          "subscriptions": {"alice": {"servers": ["d"], "primaryKey": {"clear": "k"}}}},
         "subscriptions.alice.primaryKey", "documented forms"),
        ({"servers": {"d": {"anonymous": True}}}, "servers.d.url", "is required (or 'openapi')"),
        ({"servers": {"d": {"url": "https://x", "anonymous": True, "openapi": OPENAPI}}}, "servers.d",
         "give only one of 'url', 'openapi'"),
        ({"servers": {"d": {"anonymous": True, "openapi": {"document": "a.json"}}}}, "servers.d.openapi.baseUrl", "is required"),
        ({"servers": {"d": {"anonymous": True, "openapi": {**OPENAPI, "baseUrl": "https://k:s@api.example"}}}},
         "servers.d.openapi.baseUrl", "credentials in the URL"),
        ({"servers": {"d": {"anonymous": True, "openapi": {**OPENAPI, "baseUrl": "file:///etc"}}}},
         "servers.d.openapi.baseUrl", "not an http(s) URL"),
        ({"servers": {"d": {"anonymous": True, "openapi": {**OPENAPI, "document": "ftp://x/a.json"}}}},
         "servers.d.openapi.document", "give a file path or an http(s) URL"),
        ({"servers": {"d": {"anonymous": True, "openapi": {**OPENAPI, "include": {}}}}}, "servers.d.openapi.include",
         "names no operation"),
        ({"servers": {"d": {"anonymous": True, "openapi": {**OPENAPI, "exclude": {"tag": ["a"]}}}}}, "servers.d.openapi.exclude",
         "unknown field 'tag'"),
        ({"servers": {"d": {"anonymous": True, "openapi": {**OPENAPI, "maxResponseBytes": 10}}}},
         "servers.d.openapi.maxResponseBytes", "10"),
        ({"servers": {"d": {"anonymous": True, "transport": "sse", "openapi": OPENAPI}}}, "servers.d.transport",
         "only applies to MCP servers"),
        ({"servers": {"d": {"openapi": OPENAPI}}}, "servers.d.anonymous", "no inbound auth"),
    ],
)
def test_bad_config_names_the_field(document, field, reason):
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    assert caught.value.field == field
    assert reason in str(caught.value)


def test_good_config_builds_typed_immutable_settings():
    config = parse_config({
        "servers": {"docs": {"url": "https://x/mcp", "anonymous": True, "timeouts": {"read": 5}, "headers": {"X-A": "b"}}},
        "gateway": {"allowedHosts": ["gw.example.com"], "maxBodyBytes": 2048},
    })
    docs = config.servers["docs"]
    assert docs.timeouts.read == 5 and docs.timeouts.connect == 10 and docs.headers == (("X-A", "b"),)
    assert config.gateway.allowed_hosts == ("gw.example.com",) and config.gateway.max_body_bytes == 2048
    with pytest.raises(TypeError):
        config.servers["other"] = docs  # type: ignore[index]


def test_an_openapi_server_is_typed_and_its_document_path_is_taken_from_the_config_files_folder(tmp_path):
    document = {"servers": {"api": {"anonymous": True, "timeouts": {"read": 5}, "openapi": {
        **OPENAPI, "include": {"tags": ["pets"]}, "exclude": {"operationIds": ["deletePet"]}, "maxResponseBytes": 4096}}}}
    path = tmp_path / "conf" / "gateway.json"
    path.parent.mkdir()
    path.write_text(json.dumps(document))
    api = load_config_from_env({"MCP_GATEWAY_CONFIG": str(path)}).servers["api"]
    assert api.openapi.document == str(tmp_path / "conf" / "specs" / "api.yaml")
    assert api.url == api.openapi.base_url == "https://api.internal.example/v2"
    assert api.openapi.selects("listPets", ["pets"]) and not api.openapi.selects("deletePet", ["pets"])
    assert not api.openapi.selects("other", ["users"]) and api.openapi.max_response_bytes == 4096
    inline = load_config_from_env({"MCP_GATEWAY_CONFIG": json.dumps(document)}, base_dir=tmp_path)
    assert inline.servers["api"].openapi.document == str(tmp_path / "specs" / "api.yaml")
    url = parse_config({"servers": {"api": {"anonymous": True, "openapi": {**OPENAPI, "document": "https://x/o.json"}}}})
    assert url.servers["api"].openapi.document_is_url


def test_bad_json_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"not valid JSON: .* line 2"):
        load_config_text('{"servers":\n  {,}}', "gateway.json")


def test_config_comes_from_a_path_or_inline_json(tmp_path):
    path = tmp_path / "g.json"
    path.write_text(json.dumps(GOOD))
    assert set(load_config_from_env({"MCP_GATEWAY_CONFIG": str(path)}).servers) == {"docs"}
    assert set(load_config_from_env({"MCP_GATEWAY_CONFIG": json.dumps(GOOD)}).servers) == {"docs"}
    with pytest.raises(ConfigError, match="MCP_GATEWAY_CONFIG: is not set"):
        load_config_from_env({})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config_from_env({"MCP_GATEWAY_CONFIG": str(tmp_path / "missing.json")})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"servers": {"d": {"url": "https://x/mcp", "anonymous": true, "urll": 1}}}', "servers.d: unknown field 'urll'"),
        ('{"servers": {"d": {"anonymous": true}}}', "servers.d.url: is required"),
        ('{"servers": {"d": {"url": "https://x/mcp"}}', "not valid JSON"),
        ('{"servers": {"d": {"url": "https://x/mcp"}}}', "servers.d.anonymous: no inbound auth is declared"),
    ],
)
def test_config_check_exits_non_zero_naming_the_field(tmp_path, text, expected):
    result = _check(tmp_path, text)
    assert result.returncode == 2
    assert expected in result.stderr


def test_config_check_accepts_a_good_file_and_warns_about_anonymous_servers(tmp_path):
    result = _check(tmp_path, json.dumps(GOOD))
    assert result.returncode == 0, result.stderr
    assert "OK (1 server(s): docs)" in result.stdout
    assert "server 'docs' is anonymous" in result.stderr


def test_serve_with_a_bad_config_exits_before_listening(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"servers": {"d": {"url": "https://x/mcp"}}}')
    result = subprocess.run(
        [sys.executable, "-m", "shared", "serve", "--config", str(path), "--port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "servers.d.anonymous" in result.stderr
    assert "listening" not in result.stdout


def test_published_schema_files_are_valid_and_accept_the_sample_config():
    for path in SCHEMA_PATH.parent.glob("*.schema.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))
    sample = json.loads((ROOT / "gateway.sample.json").read_text())
    config = parse_config(sample)
    assert config.servers["docs"].auth.mode == "any"
    assert config.servers["docs"].auth.entra.v2_issuer == "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0"
    azure = parse_config(json.loads((ROOT / "gateway.azure.sample.json").read_text()))
    assert azure.subscriptions["platform-agents"].secondary.secret.name == "platform-agents-secondary"


def test_relative_config_path_is_resolved_against_the_app_root(tmp_path, monkeypatch):
    (tmp_path / "gateway.json").write_text(json.dumps(GOOD))
    monkeypatch.chdir("/")
    config = load_config_from_env({"MCP_GATEWAY_CONFIG": "gateway.json"}, base_dir=tmp_path)
    assert set(config.servers) == {"docs"}


def test_access_log_is_off_unless_asked_for():
    import logging

    from shared.telemetry import configure_logging

    access, root = logging.getLogger("shared.access"), logging.getLogger("shared")
    saved = (root.handlers[:], root.propagate, root.level)
    try:
        configure_logging({})
        assert not access.isEnabledFor(logging.INFO)
        configure_logging({"MCP_GATEWAY_ACCESS_LOG": "true"})
        assert access.isEnabledFor(logging.INFO)
    finally:
        access.setLevel(logging.NOTSET)
        root.handlers[:], root.propagate = saved[0], saved[1]
        root.setLevel(saved[2])


@pytest.mark.parametrize(
    ("gateway", "field"),
    [
        ({"allowedHosts": ["127.0.0.1:@evil.example"]}, "gateway.allowedHosts[0]"),
        ({"allowedHosts": ["ok.example", "*.bad#.example"]}, "gateway.allowedHosts[1]"),
        ({"allowedOrigins": ["https://app.example/path"]}, "gateway.allowedOrigins[0]"),
        ({"cors": {"allowOrigins": ["null"]}}, "gateway.cors.allowOrigins[0]"),
        ({"cors": {"allowOrigins": ["*"]}}, "gateway.cors.allowOrigins"),
        ({"publicBaseUrl": "https://gw.example:99999"}, "gateway.publicBaseUrl"),
    ],
)
def test_hosts_and_origins_in_the_config_parse_as_requests_will(gateway, field):
    document = {"servers": {"a": {"url": "http://b/mcp", "anonymous": True}}, "gateway": gateway}
    with pytest.raises(ConfigError) as error:
        parse_config(document)
    assert error.value.field == field


def test_a_cors_wildcard_needs_an_origin_wildcard_and_is_warned_about(caplog):
    from shared.config import warn_about_risks

    document = {"servers": {"a": {"url": "http://b/mcp", "anonymous": True}},
                "gateway": {"allowedOrigins": ["*"], "cors": {"allowOrigins": ["*"]}, "trustForwardedHeaders": True}}
    with caplog.at_level("WARNING", logger="shared.config"):
        warn_about_risks(parse_config(document))
    assert "gateway.cors.allowOrigins contains '*'" in caplog.text
    assert "gateway.trustForwardedHeaders is on" in caplog.text


@pytest.mark.parametrize("value", ["contoso\r\nX-Injected: 1", "a\nb", "a\rb", "nul\x00", "del\x7f", "esc\x1b[0m"])
def test_a_static_header_value_with_a_control_character_is_refused(value):
    document = {"servers": {"r": {"url": "http://b/mcp", "anonymous": True, "headers": {"X-Tenant": value}}}}
    with pytest.raises(ConfigError) as error:
        parse_config(document)
    assert error.value.field == "servers.r.headers.X-Tenant"
    assert "control character" in error.value.message and value not in error.value.message


@pytest.mark.parametrize("name", ["X Tenant", "X-Tenant:", "X-T\u00e9nant", "", "X-Forwarded-For", "Forwarded", "Transfer-Encoding"])
def test_a_static_header_name_must_be_a_token_the_gateway_does_not_set_itself(name):
    document = {"servers": {"r": {"url": "http://b/mcp", "anonymous": True, "headers": {name: "v"}}}}
    with pytest.raises(ConfigError) as error:
        parse_config(document)
    assert error.value.field.startswith("servers.r.headers")


def test_tabs_spaces_and_non_ascii_are_fine_in_a_static_header_value():
    document = {"servers": {"r": {"url": "http://b/mcp", "anonymous": True, "headers": {"X-Tenant": "Contoso\tGmbH \u00e9"}}}}
    assert parse_config(document).servers["r"].headers == (("X-Tenant", "Contoso\tGmbH \u00e9"),)


def test_a_secret_header_prefix_with_a_control_character_is_refused():
    outbound = {"secretHeader": {"name": "x-api-key", "keyVaultSecret": {"name": "k"}, "prefix": "Key\x00 "}}
    document = {"servers": {"r": {"url": "http://b/mcp", "anonymous": True, "outbound": outbound}}}
    with pytest.raises(ConfigError) as error:
        parse_config(document)
    assert error.value.field == "servers.r.outbound.secretHeader.prefix" and "control character" in error.value.message


@pytest.mark.parametrize("scope", ['api://x/say"hi"', "two words", "back\\slash", "", "cr\r\n"])
def test_a_required_scope_must_be_an_rfc_6749_scope_token(scope):
    entra = {"tenantId": "contoso.onmicrosoft.com", "audiences": ["api://gw"], "requiredScopes": [scope]}
    document = {"servers": {"r": {"url": "http://b/mcp", "auth": {"entra": entra}}}}
    with pytest.raises(ConfigError) as error:
        parse_config(document)
    assert error.value.field == "servers.r.auth.entra.requiredScopes[0]"
