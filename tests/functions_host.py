"""A stand-in for the Azure Functions host, driving the real Python worker library.

Instead of Core Tools (the host), the tests load what the Python worker loads:
`azure-functions-runtime` (the worker's indexing, invocation and HTTP-streaming
code) with the worker's protobuf messages. This process plays the host's two parts:

- the worker protocol, with the real `FunctionRpc` messages: WorkerInitRequest (with
  the app directory; the worker answers with its HTTP-stream URI), FunctionsMetadataRequest
  (the indexed functions and their bindings), FunctionLoadRequest per function, and one
  InvocationRequest per HTTP request;
- the HTTP front end: it routes each request by the indexed functions' route templates
  under host.json's `routePrefix`, starts the invocation, and proxies the request to the
  worker's own HTTP server with the `x-ms-invocation-id` header, streaming both ways,
  as the host does for HTTP streams.

    python tests/functions_host.py --app-dir DIR [--port N]

prints `functions host listening on http://127.0.0.1:N` when ready. Besides the app's
routes it answers `GET /admin/host/invocations` (a reserved host path) with the status
of every finished invocation, and `GET /admin/functions` with the indexed functions. The worker library and the protobuf messages are
installed by scripts/test into .venv-worker (requirements-worker.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import types
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKER_LIBS = Path(os.environ.get("FUNCTIONS_WORKER_LIBS", ROOT / ".venv-worker"))
READY_PREFIX = "functions host listening on "
INVOCATION_ID_HEADER = b"x-ms-invocation-id"


def load_worker_protos() -> types.ModuleType:
    """The worker's FunctionRpc protobuf messages, as a package of their own name.

    They ship in a package named `tests`, which must not shadow anything: load its
    files under `functions_rpc` without running its __init__ (which needs grpc).
    """
    source = WORKER_LIBS / "tests" / "protos"
    package = types.ModuleType("functions_rpc")
    package.__path__ = [str(source)]  # type: ignore[attr-defined]
    sys.modules["functions_rpc"] = package
    spec = importlib.util.spec_from_file_location("functions_rpc.FunctionRpc_pb2", source / "FunctionRpc_pb2.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class WorkerRequest:
    """What the host's side of the worker protocol hands the library: a message and properties."""

    def __init__(self, name: str, message: Any, protos: Any, host: str) -> None:
        self.name = name
        self.request = message
        self.properties = {"host": host, "protos": protos}


class RouteTemplate:
    """An ASP.NET route template as the host matches it: literals, {name}, and a final {*name}."""

    def __init__(self, prefix: str, template: str) -> None:
        full = "/".join(part for part in (prefix.strip("/"), template.strip("/")) if part)
        self.segments = full.split("/") if full else []

    def match(self, path: str) -> dict[str, str] | None:
        parts = path.strip("/").split("/") if path.strip("/") else []
        params: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if segment.startswith("{*") and segment.endswith("}"):
                params[segment[2:-1]] = "/".join(parts[index:])
                return params
            if index >= len(parts):
                return None
            if segment.startswith("{") and segment.endswith("}"):
                params[segment[1:-1]] = parts[index]
            elif segment.lower() != parts[index].lower():
                return None
        return params if len(parts) == len(self.segments) else None


class IndexedFunction:
    def __init__(self, metadata: Any, route_prefix: str) -> None:
        self.function_id = metadata.function_id
        self.name = metadata.name
        bindings = [json.loads(raw) for raw in metadata.raw_bindings]
        trigger = next(b for b in bindings if b["type"] == "httpTrigger")
        self.param_name = trigger["name"]
        self.methods = {m.upper() for m in trigger.get("methods") or ()}
        self.route = RouteTemplate(route_prefix, trigger.get("route") or self.name)


class FunctionsHost:
    def __init__(self, app_dir: Path, host: str = "127.0.0.1") -> None:
        self.app_dir = app_dir
        self.host = host
        self.protos = load_worker_protos()
        from azure_functions_runtime import handle_event

        self.worker = handle_event
        self.functions: list[IndexedFunction] = []
        self.http_uri = ""
        self.invocations: list[dict[str, Any]] = []
        host_json = json.loads((app_dir / "host.json").read_text())
        self.route_prefix = host_json.get("extensions", {}).get("http", {}).get("routePrefix", "api")

    def _request(self, name: str, **fields: Any) -> WorkerRequest:
        return WorkerRequest(name, self.protos.StreamingMessage(**fields), self.protos, self.host)

    async def start_worker(self) -> None:
        sys.path.insert(0, str(self.app_dir))  # the worker puts the app directory first
        init = await self.worker.worker_init_request(
            self._request(
                "worker_init_request",
                worker_init_request=self.protos.WorkerInitRequest(
                    host_version="4.1040.0",
                    capabilities={"HttpUri": "true", "RpcHttpBodyOnly": "true"},
                    function_app_directory=str(self.app_dir),
                ),
            )
        )
        if init.result.status != self.protos.StatusResult.Success:
            raise RuntimeError(f"worker init failed: {init.result.exception.message}")
        self.http_uri = init.capabilities["HttpUri"]
        metadata = await self.worker.functions_metadata_request(
            self._request("functions_metadata_request", functions_metadata_request=self.protos.FunctionsMetadataRequest(
                function_app_directory=str(self.app_dir)))
        )
        for entry in metadata.function_metadata_results:
            loaded = await self.worker.function_load_request(
                self._request(
                    "function_load_request",
                    function_load_request=self.protos.FunctionLoadRequest(function_id=entry.function_id, metadata=entry),
                )
            )
            if loaded.result.status != self.protos.StatusResult.Success:
                raise RuntimeError(f"loading function {entry.name} failed")
            self.functions.append(IndexedFunction(entry, self.route_prefix))

    def _route(self, method: str, path: str) -> tuple[IndexedFunction, dict[str, str]] | None:
        for function in self.functions:
            params = function.route.match(path)
            if params is not None and (not function.methods or method in function.methods):
                return function, params
        return None

    def _invocation(self, function: IndexedFunction, invocation_id: str, scope: dict, params: dict[str, str]) -> Any:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope["query_string"].decode("latin-1")
        url = f"http://{headers.get('host', 'localhost')}{scope['path']}" + (f"?{query}" if query else "")
        http = self.protos.RpcHttp(method=scope["method"], url=url, headers=headers, params=params)
        binding = self.protos.ParameterBinding(name=function.param_name, data=self.protos.TypedData(http=http))
        return self._request(
            "invocation_request",
            invocation_request=self.protos.InvocationRequest(
                invocation_id=invocation_id, function_id=function.function_id, input_data=[binding]
            ),
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/admin/host/invocations":
            await _send_json(send, 200, self.invocations)
            return
        if scope["path"] == "/admin/functions":
            await _send_json(send, 200, [
                {"name": f.name, "route": "/".join(f.route.segments), "methods": sorted(f.methods)} for f in self.functions
            ])
            return
        routed = self._route(scope["method"], scope["path"])
        if routed is None:
            await _send_json(send, 404, {"host": "no function matches this route"})
            return
        function, params = routed
        invocation_id = str(uuid.uuid4())
        invocation = asyncio.ensure_future(self.worker.invocation_request(self._invocation(function, invocation_id, scope, params)))
        try:
            await self._proxy(scope, receive, send, invocation_id)
        finally:
            response = await asyncio.wait_for(invocation, 30)
            self.invocations.append(
                {
                    "id": invocation_id,
                    "function": function.name,
                    "path": scope["path"],
                    "success": response.result.status == self.protos.StatusResult.Success,
                    "error": response.result.exception.message,
                }
            )

    async def _proxy(self, scope: dict, receive: Any, send: Any, invocation_id: str) -> None:
        """Forward to the worker's HTTP server, streaming both ways (the host's HTTP-stream proxy)."""
        import httpx

        query = scope["query_string"]
        url = self.http_uri + scope["raw_path"].decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
        headers = [(k, v) for k, v in scope["headers"] if k != INVOCATION_ID_HEADER]
        headers.append((INVOCATION_ID_HEADER, invocation_id.encode()))
        disconnected = asyncio.Event()
        watchers: list[asyncio.Future] = []

        async def body():
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    return
                if message.get("body"):
                    yield message["body"]
                if not message.get("more_body"):
                    break
            watchers.append(asyncio.ensure_future(_watch_disconnect(receive, disconnected)))

        has_body = any(k in (b"content-length", b"transfer-encoding") for k, _ in scope["headers"])
        if not has_body:
            watchers.append(asyncio.ensure_future(_watch_disconnect(receive, disconnected)))
        async with httpx.AsyncClient(timeout=httpx.Timeout(None), trust_env=False) as client:
            request = client.build_request(scope["method"], url, headers=headers, content=body() if has_body else None)
            response = await client.send(request, stream=True)
            try:
                await send({"type": "http.response.start", "status": response.status_code,
                            "headers": [(k.lower(), v) for k, v in response.headers.raw if k.lower() != b"transfer-encoding"]})
                async for chunk in _until(response.aiter_raw(), disconnected):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                for watcher in watchers:
                    watcher.cancel()
                await response.aclose()


async def _watch_disconnect(receive: Any, disconnected: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    disconnected.set()


async def _until(chunks: Any, stop: asyncio.Event):
    """Chunks until the client leaves (then the worker connection is dropped, as the host does)."""
    iterator = chunks.__aiter__()
    while not stop.is_set():
        next_chunk = asyncio.ensure_future(iterator.__anext__())
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({next_chunk, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if next_chunk not in done:
            next_chunk.cancel()
            return
        try:
            yield next_chunk.result()
        except StopAsyncIteration:
            return


async def _send_json(send: Any, status: int, body: Any) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": payload})


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--app-dir", type=Path, default=ROOT)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sys.path[:0] = [str(WORKER_LIBS)]
    import uvicorn

    host = FunctionsHost(args.app_dir.resolve())
    await host.start_worker()
    server = uvicorn.Server(uvicorn.Config(
        host, host="127.0.0.1", port=args.port, log_level="warning", lifespan="off", server_header=False, date_header=False
    ))
    serving = asyncio.ensure_future(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    print(f"{READY_PREFIX}http://127.0.0.1:{port}", flush=True)
    await serving


if __name__ == "__main__":
    asyncio.run(main())
