"""Many callers through one gateway to one backend origin: each gets only its own answers.

Callers with distinct subscription keys, and anonymous ones, call the MCP SDK's
servers (JSON and SSE answers) through the real gateway on uvicorn, every server of
an origin sharing the gateway's upstream connections. Mixed in: requests carrying
`Expect: 100-continue`, uploads abandoned halfway, and clients that leave before
their answer. Every call is tagged (its JSON-RPC id and the number `add` echoes
back), and every answer must carry its own caller's tag.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random

import httpx

from backends.mcp_servers import build_app
from shared.inbound.keys import key_digest
from test_faults import _host_port, _post_head

CALLERS = [f"caller-{i}-key-0123456789abcdef" for i in range(8)]
ROUNDS = 10
PROTOCOL = {"MCP-Protocol-Version": "2025-11-25"}
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def add_call(tag: int) -> dict:
    return {"jsonrpc": "2.0", "id": f"call-{tag}", "method": "tools/call", "params": {"name": "add", "arguments": {"a": tag, "b": 0}}}


def answer_of(response: httpx.Response) -> dict:
    """The JSON-RPC answer, from a JSON body or from the SSE event that carries it."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and '"result"' in line or line.startswith("data:") and '"error"' in line:
                return json.loads(line[5:])
        raise AssertionError(f"no answer in the event stream: {response.text!r}")
    return response.json()


async def test_every_caller_gets_only_its_own_answers(start_server, start_gateway):
    json_backend = start_server(build_app("json"))
    sse_backend = start_server(build_app("stateless"))
    keyed = {"subscriptionKey": {}}
    servers = {
        # Two servers per origin: keyed and anonymous callers share upstream connections.
        "json-keyed": {"url": f"{json_backend.base_url}/mcp", "auth": keyed},
        "json-open": {"url": f"{json_backend.base_url}/mcp", "anonymous": True},
        "sse-keyed": {"url": f"{sse_backend.base_url}/mcp", "auth": keyed},
        "sse-open": {"url": f"{sse_backend.base_url}/mcp", "anonymous": True},
    }
    subscriptions = {
        f"caller{i}": {"servers": ["json-keyed", "sse-keyed"], "primaryKey": {"sha256": key_digest(key)}}
        for i, key in enumerate(CALLERS)
    }
    base = start_gateway({"servers": servers, "subscriptions": subscriptions, "gateway": {"maxBodyBytes": 1024 * 1024}})
    tags = itertools.count(1)
    wrong: list[str] = []
    answered = 0

    async def call(client: httpx.AsyncClient, server: str, headers: dict) -> None:
        nonlocal answered
        tag = next(tags)
        expected = {"id": f"call-{tag}", "result": {"result": tag}}
        try:
            response = await client.post(f"{base}/mcp/{server}", json=add_call(tag), headers={**ACCEPT, **PROTOCOL, **headers})
            got = answer_of(response) if response.status_code == 200 else {"status": response.status_code}
        except (httpx.HTTPError, AssertionError, ValueError) as error:
            got = {"failed": repr(error)}
        seen = {"id": got.get("id"), "result": got.get("result", {}).get("structuredContent")}
        if seen != expected:
            wrong.append(f"{server} {headers}: expected {expected}, got {got}")
        answered += 1

    async def abandon_upload(server: str, headers: bytes) -> None:
        body = json.dumps(add_call(next(tags))).encode()
        reader, writer = await asyncio.open_connection(*_host_port(base))
        writer.write(_post_head(base, f"/mcp/{server}", length=len(body) + 100, extra=headers) + body)
        await writer.drain()
        writer.close()

    async def leave_early(server: str, headers: bytes) -> None:
        body = json.dumps(add_call(next(tags))).encode()
        reader, writer = await asyncio.open_connection(*_host_port(base))
        writer.write(_post_head(base, f"/mcp/{server}", length=len(body), extra=headers + b"MCP-Protocol-Version: 2025-11-25\r\n") + body)
        await writer.drain()
        writer.close()

    async def caller(key: str, seed: int) -> None:
        rng = random.Random(seed)
        identity = {"Ocp-Apim-Subscription-Key": key}
        raw_identity = b"Ocp-Apim-Subscription-Key: %b\r\n" % key.encode()
        async with httpx.AsyncClient(timeout=20) as client:
            for _ in range(ROUNDS):
                kind = rng.choice(["plain", "plain", "expect", "anonymous", "abandon", "leave"])
                server = rng.choice(["json", "sse"])
                if kind == "plain":
                    await call(client, f"{server}-keyed", identity)
                elif kind == "expect":
                    await call(client, f"{server}-keyed", {**identity, "Expect": "100-continue"})
                elif kind == "anonymous":
                    await call(client, f"{server}-open", {"Expect": "100-continue"} if rng.random() < 0.5 else {})
                elif kind == "abandon":
                    await abandon_upload(f"{server}-keyed", raw_identity)
                else:
                    await leave_early(f"{server}-keyed", raw_identity)

    await asyncio.gather(*(caller(key, seed) for seed, key in enumerate(CALLERS)))
    assert wrong == [], f"{len(wrong)} of {answered} calls went wrong"
    assert answered >= len(CALLERS) * ROUNDS // 3
