"""Two gateway instances behind a round-robin nginx, as Azure spreads requests over
instances without sticky sessions: MCP sessions must not depend on which instance
answers. nginx (Debian's nginx-light) alternates instances request by request."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest
from mcp import Client
from mcp.client.sse import sse_client

import npm_tools
from backends.legacy_sessions import PathSessionBackend
from backends.mcp_servers import build_app
from gateway_process import start_gateway_process
from helpers import gateway_config, sse_events

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SHARED_KEY = "k" * 16 + "0123456789abcdef0123456789"
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}

NGINX_CONF = """\
worker_processes 1;
master_process off;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  upstream gateways {{ server 127.0.0.1:{a}; server 127.0.0.1:{b}; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://gateways;
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_buffering off;
      proxy_read_timeout 60s;
    }}
  }}
}}
"""


class RoundRobin:
    """nginx in front of two gateway processes; each process stopped by its own pid."""

    def __init__(self, document: dict, keys: tuple[str | None, str | None]) -> None:
        self.instances = [
            start_gateway_process(document, env={"MCP_GATEWAY_ACCESS_LOG": "true", **({"MCP_GATEWAY_SIGNING_KEY": k} if k else {})})
            for k in keys
        ]
        self.tmp = Path(tempfile.mkdtemp(prefix="nginx-rr-"))
        self.port = npm_tools.free_port()
        conf = self.tmp / "nginx.conf"
        a, b = (i.port for i in self.instances)
        conf.write_text(NGINX_CONF.format(tmp=self.tmp, port=self.port, a=a, b=b))
        self.nginx = subprocess.Popen([NGINX, "-p", str(self.tmp), "-e", str(self.tmp / "error.log"), "-c", str(conf)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        npm_tools._wait_http(self.nginx, f"{self.url}/healthz", self.tmp / "error.log", 20)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def served(self, path: str) -> list[int]:
        """How many requests for `path` each instance logged."""
        return [sum(1 for line in i.log().splitlines() if f" {path} " in line) for i in self.instances]

    def stop(self) -> None:
        self.nginx.terminate()
        self.nginx.wait(timeout=10)
        for instance in self.instances:
            instance.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def everything_sse():
    handle = npm_tools.start_server_everything("sse")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def round_robin():
    started: list[RoundRobin] = []

    def start(document: dict, keys: tuple[str | None, str | None] = (SHARED_KEY, SHARED_KEY)) -> RoundRobin:
        started.append(RoundRobin(document, keys))
        return started[-1]

    yield start
    for pair in started:
        pair.stop()


def legacy(everything_sse) -> dict:
    return gateway_config({"everything": {"url": everything_sse.url, "transport": "sse", "anonymous": True}})


async def test_legacy_sse_messages_may_land_on_either_instance(round_robin, everything_sse):
    pair = round_robin(legacy(everything_sse))
    async with Client(sse_client(f"{pair.url}/mcp/everything/sse"), mode="legacy") as client:
        for n in range(4):
            result = await client.call_tool("echo", {"message": f"hop {n}"})
            assert f"hop {n}" in result.content[0].text
    assert all(count > 0 for count in pair.served("/mcp/everything/message")), "both instances took messages"


async def test_without_a_shared_key_the_other_instance_refuses_and_names_the_setting(round_robin, start_server):
    backend = start_server(PathSessionBackend(), lifespan="off")
    pair = round_robin(
        gateway_config({"legacy": {"url": f"{backend.base_url}/sse", "transport": "sse", "anonymous": True}}),
        keys=(None, None),
    )
    async with httpx.AsyncClient(base_url=pair.url, timeout=10) as client:
        async with client.stream("GET", "/mcp/legacy/sse", headers={"accept": "text/event-stream"}) as stream:
            events = sse_events(stream)  # held: an abandoned generator would close the stream when collected
            async for event in events:
                if event.get("event") == "endpoint":
                    break
            answers = [await client.post(event["data"], json=PING) for _ in range(2)]
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [202, 400]
    refused = next(a for a in answers if a.status_code == 400)
    assert "MCP_GATEWAY_SIGNING_KEY" in refused.json()["error"]["message"]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_streamable_http_sessions_work_across_instances(round_robin, start_server, mode):
    backend = start_server(build_app("stateful-sse"))
    pair = round_robin(gateway_config({"sdk": {"url": f"{backend.base_url}/mcp", "anonymous": True}}))
    async with Client(f"{pair.url}/mcp/sdk", mode=mode) as client:
        for n in range(4):
            result = await client.call_tool("add", {"a": n, "b": 1})
            assert result.structured_content == {"result": n + 1}
        resource = await client.read_resource("test://greeting")
        assert resource.contents[0].text == "hello through the gateway"
    assert all(count > 0 for count in pair.served("/mcp/sdk")), "both instances took requests"
