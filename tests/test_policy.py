"""Tool authorization and list filtering, with the MCP SDK client against SDK servers."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from backends.mcp_servers import build_app
from shared.config import parse_config
from shared.errors import BadRequest, ConfigError
from shared.policy.messages import read_messages

ADMIN_KEY, USER_KEY = "admin-key-0123456789", "user-key-0123456789"
POLICY = {
    "default": "deny",
    "rules": [
        {"effect": "allow", "methods": ["tools/call"], "names": ["slow_*", "progress_then_wait"]},
        {"effect": "allow", "methods": ["tools/call"], "names": ["add"], "callers": {"subscriptions": ["admins"]}},
        {"effect": "allow", "methods": ["resources/read", "prompts/get"]},
    ],
}


def _config(url: str) -> dict:
    sha = lambda key: {"sha256": hashlib.sha256(key.encode()).hexdigest()}  # noqa: E731
    return {
        "servers": {"backend": {"url": url, "auth": {"subscriptionKey": {}}, "policy": POLICY}},
        "subscriptions": {
            "admins": {"servers": ["*"], "primaryKey": sha(ADMIN_KEY)},
            "users": {"servers": ["*"], "primaryKey": sha(USER_KEY)},
        },
    }


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("kind", ["json", "stateless"])
async def test_a_caller_sees_and_calls_only_the_tools_its_role_allows(start_server, start_gateway, kind, mode):
    backend = start_server(build_app(kind))
    url = start_gateway(_config(f"{backend.base_url}/mcp")) + "/mcp/backend"
    for key, sees_add in ((USER_KEY, False), (ADMIN_KEY, True)):
        http = httpx.AsyncClient(headers={"Ocp-Apim-Subscription-Key": key})
        from mcp.client.streamable_http import streamable_http_client

        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert ("add" in tools) == sees_add
            assert "slow_progress" in tools
            if sees_add:
                assert (await client.call_tool("add", {"a": 1, "b": 2})).structured_content == {"result": 3}
            else:
                with pytest.raises(MCPError, match="unknown tool"):
                    await client.call_tool("add", {"a": 1, "b": 2})
            assert (await client.read_resource("test://greeting")).contents[0].text == "hello through the gateway"
        await http.aclose()


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","name":"add"}}',
        b'[]',
        b'"tools/call"',
        b'[1]',
        b'{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"add"}}',
        b'{"jsonrpc":"2.0","id":1,"method":" tools/call","params":{"name":"add"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"\xef\xbd\x94ools/call","params":{"name":"add"}}',
        b'{"jsonrpc":"2.0","id":1,"method":7}',
        b"\xff\xfe{}",
        b"[" * 100000,
    ],
)
def test_hostile_bodies_are_refused(body):
    with pytest.raises(BadRequest):
        read_messages(body)


def test_unicode_and_oversized_tool_names_are_denied_and_batches_are_checked_whole():
    from shared.caller import Caller
    from shared.config.policy import build_policy
    from shared.policy.rules import ServerRules

    rules = ServerRules(build_policy({"default": "allow", "rules": [{"effect": "deny", "names": ["add"]}]}, "p"))
    assert not rules.allows("tools/call", "add", Caller())
    for trick in ("ａdd", "add\u200b", "add ", "a" * 129, None, 7):
        assert not rules.allows("tools/call", trick, Caller())
    assert rules.allows("tools/call", "sub", Caller())
    batch = read_messages(b'[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add"}}]')
    assert batch.batch and [c.name for c in batch.calls] == ["add"]


def test_policy_config_is_checked():
    with pytest.raises(ConfigError, match="policy.default"):
        parse_config({"servers": {"a": {"url": "http://127.0.0.1:9/mcp", "anonymous": True, "policy": {}}}})
    with pytest.raises(ConfigError, match="streamable-http"):
        parse_config({"servers": {"a": {"url": "http://127.0.0.1:9/sse", "transport": "sse", "anonymous": True,
                                        "policy": {"default": "allow"}}}})


def test_event_stream_filter_rewrites_only_the_list_event_even_when_fed_byte_by_byte():
    import json

    from shared.caller import Caller
    from shared.config.policy import build_policy
    from shared.policy.lists import EventStreamFilter
    from shared.policy.rules import ServerRules

    rules = ServerRules(build_policy({"default": "allow", "rules": [{"effect": "deny", "names": ["add"]}]}, "p"))
    progress = b'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{}}\r\n\r\n'
    listing = b'id: 7\r\ndata: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"add"},{"name":"sub"}]}}\r\n\r\n'
    stream = EventStreamFilter(rules, Caller())
    out = b"".join(stream.feed(progress[i : i + 1]) for i in range(len(progress)))
    assert out == progress  # passed on byte for byte, as soon as the event was whole
    out = b"".join(stream.feed(listing[i : i + 1]) for i in range(len(listing)))
    assert out.startswith(b"id: 7\n")
    data = json.loads(out.split(b"data: ", 1)[1])
    assert data["result"]["tools"] == [{"name": "sub"}]


async def test_the_gateway_refuses_a_duplicate_key_body_and_answers_a_denied_call_with_its_id(start_server, start_gateway):
    backend = start_server(build_app("json"))
    url = start_gateway(_config(f"{backend.base_url}/mcp")) + "/mcp/backend"
    headers = {"Ocp-Apim-Subscription-Key": USER_KEY, "content-type": "application/json",
               "accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}
    async with httpx.AsyncClient() as http:
        twice = b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"slow_progress","name":"add"}}'
        assert (await http.post(url, content=twice, headers=headers)).status_code == 400
        denied = await http.post(url, json={"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                                            "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}, headers=headers)
        assert denied.status_code == 200
        assert denied.json()["id"] == 4 and denied.json()["error"]["message"] == "unknown tool: add"


async def test_a_call_a_scope_would_allow_is_a_step_up_challenge_naming_that_scope(start_server, start_gateway, entra, emulator_pki):
    from backends.recorder import RecordingBackend
    from helpers import gateway_config

    recorder = RecordingBackend()
    backend = start_server(recorder, lifespan="off")
    scope = "api://mcp-gateway/tools.write"
    server = {
        "url": f"{backend.base_url}/mcp",
        "auth": {"entra": {"tenantId": entra.tenant_id, "audiences": ["api://mcp-gateway"], "authorityHost": entra.authority_host}},
        "policy": {"default": "deny", "rules": [
            {"effect": "allow", "methods": ["tools/call"], "names": ["write_*"], "callers": {"scopes": [scope]}}]},
    }
    url = start_gateway(gateway_config({"api": server}, caBundle=emulator_pki.ca_path)) + "/mcp/api"
    call = b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"write_note","arguments":{}}}'
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(timeout=10) as http:
        reader = entra.mint({"aud": "api://mcp-gateway", "scp": "mcp.access"})
        refused = await http.post(url, content=call, headers={**headers, "authorization": f"Bearer {reader}"})
        assert refused.status_code == 403
        challenge = refused.headers["www-authenticate"]
        assert 'error="insufficient_scope"' in challenge and f'scope="{scope}"' in challenge
        assert "resource_metadata=" in challenge and reader not in refused.text
        assert recorder.requests == []
        writer = entra.mint({"aud": "api://mcp-gateway", "scp": "mcp.access tools.write"})  # Entra's short name
        allowed = await http.post(url, content=call, headers={**headers, "authorization": f"Bearer {writer}"})
    assert allowed.status_code == 200, allowed.text
    assert len(recorder.requests) == 1 and b"write_note" in recorder.requests[0].body
