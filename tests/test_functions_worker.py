"""function_app.py run the way Azure runs it: indexed and invoked by the Python worker's
own library, with the host's routing and HTTP-stream proxying played by
tests/functions_host.py. Every route the README documents answers through it."""

from __future__ import annotations

import time

import httpx
import pytest
from mcp import Client
from mcp.client.sse import sse_client

import npm_tools
from backends.mcp_servers import Rendezvous, build_app
from gateway_process import start_functions_host
from helpers import gateway_config, sse_events
from test_inbound_tokens import AUDIENCE, CLIENT_APP, entra_server

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@pytest.fixture(scope="module")
def everything_sse():
    handle = npm_tools.start_server_everything("sse")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def functions(start_server, entra, emulator_pki, everything_sse):
    """The gateway under the worker: a stateful SDK backend, an Entra-protected one, a legacy SSE one."""
    rendezvous = Rendezvous()
    backend = start_server(build_app("stateful-sse", rendezvous=rendezvous))
    document = gateway_config(
        {
            "sdk": {"url": f"{backend.base_url}/mcp", "anonymous": True},
            "secured": entra_server(f"{backend.base_url}/mcp", entra),
            "legacy": {"url": everything_sse.url, "transport": "sse", "anonymous": True},
        },
        caBundle=emulator_pki.ca_path,
        cors={"allowOrigins": ["https://app.contoso.com"]},
    )
    host = start_functions_host(document)
    try:
        yield host, rendezvous
    finally:
        host.stop()


def invocations(host) -> list[dict]:
    return httpx.get(f"{host.url}/admin/host/invocations", timeout=10).json()


def test_the_worker_indexes_one_catch_all_function_for_every_method(functions):
    host, _ = functions
    indexed = httpx.get(f"{host.url}/admin/functions", timeout=10).json()
    assert indexed == [
        {"name": "gateway", "route": "{*path}", "methods": ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]}
    ]


async def test_every_readme_route_answers_through_the_functions_entry(functions, entra):
    host, _ = functions
    base = host.url
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        health = await client.get(f"{base}/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"

        metadata = await client.get(f"{base}/.well-known/oauth-protected-resource/mcp/secured")
        assert metadata.status_code == 200
        assert metadata.json()["resource"].endswith("/mcp/secured")
        assert metadata.json()["authorization_servers"] == [f"{entra.authority_host}/{entra.tenant_id}/v2.0"]
        root_metadata = await client.get(f"{base}/.well-known/oauth-protected-resource")
        assert root_metadata.status_code == 200 and root_metadata.json()["authorization_servers"]

        challenged = await client.post(f"{base}/mcp/secured", json=INITIALIZE, headers=MCP_HEADERS)
        assert challenged.status_code == 401
        assert "/.well-known/oauth-protected-resource/mcp/secured" in challenged.headers["www-authenticate"]
        token = entra.mint({"aud": AUDIENCE, "azp": CLIENT_APP}, version=2)
        signed_in = await client.post(
            f"{base}/mcp/secured", json=INITIALIZE, headers={**MCP_HEADERS, "authorization": f"Bearer {token}"}
        )
        assert signed_in.status_code == 200, signed_in.text

        initialized = await client.post(f"{base}/mcp/sdk", json=INITIALIZE, headers=MCP_HEADERS)
        assert initialized.status_code == 200
        session = initialized.headers["mcp-session-id"]
        session_headers = {**MCP_HEADERS, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
        async with client.stream("GET", f"{base}/mcp/sdk", headers={**session_headers, "accept": "text/event-stream"}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
        deleted = await client.delete(f"{base}/mcp/sdk", headers=session_headers)
        assert deleted.status_code == 200

        preflight = await client.options(
            f"{base}/mcp/sdk",
            headers={"origin": "https://app.contoso.com", "access-control-request-method": "POST"},
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "https://app.contoso.com"

        async with client.stream("GET", f"{base}/mcp/legacy/sse", headers={"accept": "text/event-stream"}) as stream:
            assert stream.status_code == 200
            async for event in sse_events(stream):
                if event.get("event") == "endpoint":
                    break
        assert event["data"].startswith("/mcp/legacy/message?")

        unknown = await client.get(f"{base}/mcp/nope")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_server"
        wrong_method = await client.put(f"{base}/mcp/sdk", json={})
        assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    finished = invocations(host)
    assert finished and all(entry["success"] for entry in finished), finished


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_sdk_client_calls_tools_through_the_worker(functions, mode):
    host, _ = functions
    async with Client(f"{host.url}/mcp/sdk", mode=mode) as client:
        assert {"add", "slow_progress"} <= {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("add", {"a": 40, "b": 2})
        assert result.structured_content == {"result": 42}


async def test_progress_streams_through_the_worker_before_the_result(functions):
    """The tool finishes normally only once the client saw its first progress event:
    impossible if the worker or the host stand-in buffered the response."""
    host, rendezvous = functions
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(f"progress:{message}")
        rendezvous.arrived("worker")

    async with Client(f"{host.url}/mcp/sdk", mode="legacy") as client:
        result = await client.call_tool("progress_then_wait", {"key": "worker", "timeout": 10}, progress_callback=on_progress)
    assert result.structured_content == {"result": "client saw progress first"}
    assert seen == ["progress:first"]


async def test_the_legacy_sse_transport_through_the_worker(functions):
    host, _ = functions
    async with Client(sse_client(f"{host.url}/mcp/legacy/sse"), mode="legacy") as client:
        result = await client.call_tool("echo", {"message": "through the worker"})
    assert "through the worker" in result.content[0].text


@pytest.mark.parametrize(
    "setting, field",
    [
        ('{"servers": {"docs": {"url": "https://docs.internal/mcp"}}}', "servers.docs.anonymous"),
        ("/nonexistent/gateway.json", "/nonexistent/gateway.json"),
        ('{"servers": ', "MCP_GATEWAY_CONFIG"),
    ],
)
def test_a_bad_config_answers_503_naming_it_on_every_route(setting, field):
    check_every_route_answers_503(start_functions_host(setting), field)


def test_an_unresolved_signing_key_reference_answers_503_naming_the_setting():
    """App Service passes a Key Vault reference it could not resolve as its own text."""
    reference = "@Microsoft.KeyVault(VaultName=kv-gateway;SecretName=mcp-gateway-signing-key)"
    document = gateway_config({"docs": {"url": "http://127.0.0.1:9/mcp", "anonymous": True}})
    host = start_functions_host(document, env={"MCP_GATEWAY_SIGNING_KEY": reference})
    check_every_route_answers_503(host, "MCP_GATEWAY_SIGNING_KEY")


def check_every_route_answers_503(host, field: str) -> None:
    try:
        for path in ("/healthz", "/mcp/docs", "/.well-known/oauth-protected-resource/mcp/docs", "/"):
            response = httpx.get(f"{host.url}{path}", timeout=10)
            assert response.status_code == 503, path
            error = response.json()["error"]
            assert error["code"] == "gateway_misconfigured"
            assert field in error["message"]
        assert "the gateway config is invalid" in host.log()
    finally:
        host.stop()


def test_a_failing_start_up_check_is_logged_and_turns_healthz_to_503(key_vault, managed_identity, emulator_pki):
    document = gateway_config(
        {"docs": {"url": "http://127.0.0.1:9/mcp", "auth": {"subscriptionKey": {}}}},
        caBundle=emulator_pki.ca_path,
        keyVaultUrl=key_vault.vault_url,
    )
    document["subscriptions"] = {
        "agents": {"servers": ["*"], "primaryKey": {"keyVaultSecret": {"name": "missing-key"}}}
    }
    host = start_functions_host(document, env=managed_identity.env())
    try:
        deadline = time.monotonic() + 30
        while (health := httpx.get(f"{host.url}/healthz", timeout=10)).status_code == 200:
            assert time.monotonic() < deadline, "the start-up check never failed"
            time.sleep(0.05)  # poll interval, not synchronisation
        assert health.status_code == 503
        assert health.json()["error"]["code"] == "gateway_misconfigured"
        assert "missing-key" not in health.text and key_vault.vault_url not in health.text
        assert "start-up check failed" in host.log() and "missing-key" in host.log()
    finally:
        host.stop()
