"""The benchmark's moving parts: processes, targets, wrk, and the small Python clients.

run.py composes these into the benchmark; profile_gateway.py reuses them to profile the
gateway under the same load. Everything listens on 127.0.0.1, and every process
started here is stopped here, by its own pid.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
VARIANTS_DIR = BENCH_DIR / "variants"
PROTOCOL_VERSION = "2026-07-28"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Backend and proxy share one core, the load generator (and this script) the other,
# so a proxy cannot borrow the load generator's CPU and its cost shows as throughput.
SERVER_CORE = 0
LOAD_CORE = 1


class BenchError(RuntimeError):
    """The benchmark cannot trust what it measured (or could not measure at all)."""


# -- requests ---------------------------------------------------------------------------


def tools_call(tool: str, *, request_id: int = 1, progress_token: str | None = None) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a stateless (2026-07-28) `tools/call`, as the SDK server requires:
    the `_meta` envelope in the body and Mcp-Method / Mcp-Name headers that match it."""
    meta: dict[str, Any] = {
        "io.modelcontextprotocol/protocolVersion": PROTOCOL_VERSION,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    if progress_token is not None:
        meta["progressToken"] = progress_token
    arguments = {"a": 1, "b": 2} if tool.startswith("add") else {}
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": tool, "arguments": arguments, "_meta": meta}}
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": PROTOCOL_VERSION,
        "Mcp-Method": "tools/call",
        "Mcp-Name": tool,
    }
    return json.dumps(body, separators=(",", ":")).encode(), headers


# -- routes and targets -----------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One backend endpoint: served by `process` at `path`, named `name` in nginx and the gateway.

    `tool` is what the load and the checks call there; `streams` says the answer is an SSE
    stream with a progress event before the result (checked before anything is timed).
    """

    name: str
    process: str
    path: str
    tool: str = "add"
    streams: bool = False

    def call(self) -> tuple[bytes, dict[str, str]]:
        return tools_call(self.tool, progress_token="p" if self.streams else None)


ROUTES = {
    "raw": Route("raw", "raw", "/mcp"),
    "raw-sse": Route("raw-sse", "raw", "/sse", tool="progress_then_result", streams=True),
    "sdk-json": Route("sdk-json", "sdk-json", "/mcp"),
    # A plain `add` gets a JSON answer even from the SDK in SSE mode (it streams only once
    # a notification is sent), so the SSE row calls a tool that sends one first.
    "sdk-sse": Route("sdk-sse", "sdk-sse", "/mcp", tool="add_with_progress", streams=True),
}
BACKEND_PROCESSES = ("raw", "sdk-json", "sdk-sse")


@dataclass
class Target:
    """Where a client sends a request for a route: straight to it, or through a proxy."""

    name: str
    url_for: Callable[[Route], str]
    proxy: "Process | None" = None
    headers: Mapping[str, str] = field(default_factory=dict)
    credential_headers: tuple[str, ...] = ()  # verify(): without any of these, the answer must be 401


# -- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pin(pid: int, core: int) -> None:
    """Pin every thread of a process (what `taskset -a -p` does); new threads inherit it."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), {core})
        except ProcessLookupError:
            pass


def can_pin() -> bool:
    return {SERVER_CORE, LOAD_CORE} <= os.sched_getaffinity(0)


class Process:
    """A child process with its output in a log file, stopped by its own pid."""

    def __init__(
        self, name: str, argv: list[str], *, port: int, log_dir: Path, env: Mapping[str, str | None] | None = None
    ) -> None:
        self.name = name
        self.port = port
        self.log_path = log_dir / f"{name.replace(':', '-')}.log"
        self._log = open(self.log_path, "wb")
        environ = {**os.environ, **(env or {})}
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={k: v for k, v in environ.items() if v is not None},  # None (JSON null): unset
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.popen.pid

    def wait_listening(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.popen.returncode} before listening:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)
        raise BenchError(f"{self.name} did not listen on 127.0.0.1:{self.port} in time:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        """utime + stime of the whole process (all threads), from /proc/<pid>/stat."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise BenchError(f"no VmRSS for {self.name}")

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(f"  | {line}" for line in text[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=8)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


NGINX_CONF = """\
worker_processes 1;
master_process off;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/nginx-client-body;
  proxy_temp_path {tmp}/nginx-proxy;
  fastcgi_temp_path {tmp}/nginx-fastcgi;
  uwsgi_temp_path {tmp}/nginx-uwsgi;
  scgi_temp_path {tmp}/nginx-scgi;
{upstreams}
  server {{
    listen 127.0.0.1:{port};
    proxy_http_version 1.1;
    proxy_read_timeout 3600s;
{locations}
  }}
}}
"""


def nginx_conf(tmp: Path, port: int, backend_ports: Mapping[str, int]) -> str:
    """A plain reverse proxy with upstream keep-alive (nginx's defaults otherwise).
    SSE backends send X-Accel-Buffering: no, so nginx streams their events."""
    upstreams = "".join(
        f"  upstream {name} {{ server 127.0.0.1:{p}; keepalive 256; }}\n" for name, p in backend_ports.items()
    )
    locations = "".join(
        f"    location = /mcp/{route.name} {{ proxy_pass http://{route.process}{route.path}; "
        # proxy_set_header is inherited only by levels that set none, so all of them go here;
        # Connection "" keeps the upstream connection alive.
        f"proxy_set_header Host 127.0.0.1:{backend_ports[route.process]}; proxy_set_header Connection \"\"; }}\n"
        for route in ROUTES.values()
    )
    return NGINX_CONF.format(tmp=tmp, port=port, upstreams=upstreams, locations=locations)


# -- gateway variants -------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """A gateway configuration to benchmark, from bench/variants/<name>.json.

    server:             merged into every generated server entry (e.g. inbound auth, outbound)
    gateway:            the config's "gateway" section
    subscriptions:      the config's "subscriptions" section (subscription keys)
    env:                environment of the gateway process (null removes a variable)
    request_headers:    headers every client adds when it calls this variant
    credential_headers: names in request_headers the gateway must require: verify() checks
                        that a request without them (all, and each one) is refused (401/403)
    setup:              what the harness starts first; {"azureEmulators": {...}} starts the
                        Entra and managed identity emulators (bench/azure_emulators.py), whose
                        values fill {placeholders} in server, gateway, subscriptions, env and
                        request_headers
    targets:            the performance targets for this variant (defaults: the anonymous ones)
    command:            argv that serves the gateway, before --config/--port/--host
                        (default: python -m shared serve; a prototype may replace it)
    """

    name: str
    description: str
    server: Mapping[str, Any]
    gateway: Mapping[str, Any]
    env: Mapping[str, str | None]
    request_headers: Mapping[str, str]
    command: tuple[str, ...] = ()
    subscriptions: Mapping[str, Any] = field(default_factory=dict)
    credential_headers: tuple[str, ...] = ()
    setup: Mapping[str, Any] = field(default_factory=dict)
    targets: Mapping[str, float] = field(default_factory=dict)

    FIELDS = {
        "description", "server", "gateway", "subscriptions", "env", "requestHeaders", "credentialHeaders",
        "setup", "targets", "command",
    }
    SETUPS = {"azureEmulators"}

    @classmethod
    def load(cls, path: Path) -> "Variant":
        doc = json.loads(path.read_text())
        unknown = set(doc) - cls.FIELDS
        if unknown:
            raise BenchError(f"{path}: unknown field(s) {sorted(unknown)}")
        unknown = set(doc.get("setup", {})) - cls.SETUPS
        if unknown:
            raise BenchError(f"{path}: unknown setup(s) {sorted(unknown)}; known: {sorted(cls.SETUPS)}")
        missing = [h for h in doc.get("credentialHeaders", ()) if h not in doc.get("requestHeaders", {})]
        if missing:
            raise BenchError(f"{path}: credentialHeaders {missing} are not in requestHeaders")
        return cls(
            name=path.stem,
            description=doc.get("description", ""),
            server=doc.get("server", {}),
            gateway=doc.get("gateway", {}),
            env=doc.get("env", {}),
            request_headers=doc.get("requestHeaders", {}),
            command=tuple(doc.get("command", ())),
            subscriptions=doc.get("subscriptions", {}),
            credential_headers=tuple(doc.get("credentialHeaders", ())),
            setup=doc.get("setup", {}),
            targets=doc.get("targets", {}),
        )

    def resolve(self, values: Mapping[str, str]) -> "Variant":
        """The variant with every {name} of `values` replaced in its strings; an unknown one fails."""

        def fill(value: Any) -> Any:
            if isinstance(value, str):
                for key, replacement in values.items():
                    value = value.replace("{" + key + "}", replacement)
                left = re.findall(r"\{[A-Za-z][A-Za-z0-9]*\}", value)
                if left:
                    raise BenchError(f"variant {self.name}: no value for {', '.join(left)} (setup: {sorted(self.setup) or 'none'})")
                return value
            if isinstance(value, Mapping):
                return {k: fill(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [fill(v) for v in value]
            return value

        return replace(
            self,
            server=fill(self.server),
            gateway=fill(self.gateway),
            subscriptions=fill(self.subscriptions),
            env=fill(self.env),
            request_headers=fill(self.request_headers),
        )

    def config(self, backend_ports: Mapping[str, int]) -> dict[str, Any]:
        servers = {
            route.name: {"url": f"http://127.0.0.1:{backend_ports[route.process]}{route.path}", **self.server}
            for route in ROUTES.values()
        }
        document: dict[str, Any] = {"servers": servers, "gateway": dict(self.gateway)}
        if self.subscriptions:
            document["subscriptions"] = dict(self.subscriptions)
        return document


def find_variants(names: Iterable[str]) -> list[Variant]:
    """Variants by name (bench/variants/<name>.json) or by path to a JSON file."""
    found = []
    for name in names:
        path = Path(name) if name.endswith(".json") else VARIANTS_DIR / f"{name}.json"
        if not path.is_file():
            raise BenchError(f"no variant file {path}")
        found.append(Variant.load(path))
    return found


def all_variant_names() -> list[str]:
    return sorted(p.stem for p in VARIANTS_DIR.glob("*.json"))


# -- the running set-up -----------------------------------------------------------------


def require_tools() -> None:
    missing = [tool for tool in ("wrk", "nginx") if not _which(tool)]
    if missing:
        raise BenchError(
            f"missing {', '.join(missing)}: install with `apt-get install -y wrk nginx-light` "
            "(Debian packages wrk and nginx-light)"
        )


def _which(tool: str) -> str | None:
    for directory in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/sbin", "/sbin"]:
        path = os.path.join(directory, tool)
        if os.access(path, os.X_OK):
            return path
    return None


class Setup:
    """Backends, nginx and one gateway per variant, started together, pinned once listening."""

    def __init__(self, variants: list[Variant], *, sse_gap_ms: float, keep_logs: bool = False) -> None:
        self.variants = variants
        self.sse_gap_ms = sse_gap_ms
        self.keep_logs = keep_logs
        self.stack = ExitStack()
        self.processes: dict[str, Process] = {}
        self.targets: list[Target] = []
        self.pinned = False
        self.azure: Any = None  # AzureEmulators, when a variant's setup asks for them

    def start_azure_emulators(self) -> Any:
        """Entra + managed identity emulators in threads of this process (once, shared by all variants)."""
        if self.azure is None:
            try:  # needs tests/emulators and the test dependencies (trustme): imported only when asked
                from azure_emulators import AzureEmulators
            except ImportError as exc:
                raise BenchError(f"the Azure emulators need the test dependencies (pip install -r requirements-dev.txt): {exc}") from None

            self.azure = self.stack.enter_context(AzureEmulators(self.tmp / "pki"))
        return self.azure

    def _resolve(self, variant: Variant) -> Variant:
        values: dict[str, str] = {}
        if "azureEmulators" in variant.setup:
            values.update(self.start_azure_emulators().placeholders(variant.setup["azureEmulators"]))
        return variant.resolve(values)

    def __enter__(self) -> "Setup":
        try:
            self._start()
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def _spawn(self, name: str, argv: list[str], port: int, env: Mapping[str, str | None] | None = None) -> Process:
        process = Process(name, argv, port=port, log_dir=self.tmp, env=env)
        self.stack.callback(process.stop)
        self.processes[name] = process
        return process

    def _start(self) -> None:
        if self.keep_logs:
            self.tmp = Path(tempfile.mkdtemp(prefix="mcp-bench-"))
        else:
            self.tmp = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="mcp-bench-")))
        python = sys.executable
        backend_ports = {kind: free_port() for kind in BACKEND_PROCESSES}
        for kind, port in backend_ports.items():
            self._spawn(
                kind,
                [python, str(BENCH_DIR / "backends.py"), kind, "--port", str(port), "--sse-gap-ms", str(self.sse_gap_ms)],
                port,
            )
        nginx_port = free_port()
        conf = self.tmp / "nginx.conf"
        conf.write_text(nginx_conf(self.tmp, nginx_port, backend_ports))
        nginx = self._spawn("nginx", [_which("nginx") or "nginx", "-p", str(self.tmp), "-e", str(self.tmp / "nginx-error.log"), "-c", str(conf)], nginx_port)
        self.variants = [self._resolve(v) for v in self.variants]
        gateways = []
        for variant in self.variants:
            config = self.tmp / f"gateway-{variant.name}.json"
            config.write_text(json.dumps(variant.config(backend_ports), indent=2))
            port = free_port()
            command = [python if part == "{python}" else part for part in variant.command] or [python, "-m", "shared", "serve"]
            argv = [*command, "--config", str(config), "--port", str(port), "--host", "127.0.0.1"]
            gateways.append((variant, self._spawn(f"gateway:{variant.name}", argv, port, env=variant.env)))

        deadline = time.monotonic() + 60
        for process in self.processes.values():
            process.wait_listening(deadline)
        # Start-up runs on both cores (it is not measured); the runs are pinned. Every thread of
        # this process goes to the load core, the emulators' server threads included.
        if can_pin():
            for process in self.processes.values():
                pin(process.pid, SERVER_CORE)
            pin(os.getpid(), LOAD_CORE)
            self.pinned = True

        self.backend_ports = backend_ports
        self.targets.append(Target("direct", lambda r: f"http://127.0.0.1:{backend_ports[r.process]}{r.path}"))
        self.targets.append(Target("nginx", lambda r: f"http://127.0.0.1:{nginx_port}/mcp/{r.name}", proxy=nginx))
        for variant, process in gateways:
            self.targets.append(
                Target(
                    process.name,
                    lambda r, p=process.port: f"http://127.0.0.1:{p}/mcp/{r.name}",
                    proxy=process,
                    headers=variant.request_headers,
                    credential_headers=variant.credential_headers,
                )
            )

    def backend(self, route: Route) -> Process:
        return self.processes[route.process]

    def check_alive(self) -> None:
        for process in self.processes.values():
            if process.popen.poll() is not None:
                raise BenchError(f"{process.name} died (exit {process.popen.returncode}):\n{process.log_tail()}")


# -- one request, checked (and timed to its first SSE event) -----------------------------


@dataclass
class Exchange:
    status: int
    content_type: str
    first_event_s: float | None
    total_s: float
    events: list[str]
    body: bytes


def exchange(conn: http.client.HTTPConnection, path: str, body: bytes, headers: Mapping[str, str]) -> Exchange:
    """POST one request on a kept-alive connection; time the first complete SSE event."""
    started = time.perf_counter()
    conn.request("POST", path, body=body, headers=dict(headers))
    response = conn.getresponse()
    content_type = response.getheader("content-type", "")
    first_event_s = None
    events: list[str] = []
    if content_type.startswith("text/event-stream"):
        data: list[bytes] = []
        while True:
            line = response.readline()
            if not line:
                break
            line = line.rstrip(b"\r\n")
            if line.startswith(b"data:"):
                data.append(line[5:].strip())
            elif not line and data:
                if first_event_s is None:
                    first_event_s = time.perf_counter() - started
                events.append(b"\n".join(data).decode())
                data = []
        raw = b""
    else:
        raw = response.read()
    total_s = time.perf_counter() - started
    return Exchange(response.status, content_type, first_event_s, total_s, events, raw)


def check_result(ex: Exchange, *, what: str, expect_progress_first: bool = False) -> None:
    """A 2xx answer that carries a JSON-RPC result; fail loudly otherwise."""
    if not 200 <= ex.status < 300:
        raise BenchError(f"{what}: HTTP {ex.status} {ex.body[:300]!r} {ex.events[:2]}")
    messages = [json.loads(e) for e in ex.events] if ex.events else [json.loads(ex.body)]
    final = messages[-1]
    if "result" not in final:
        raise BenchError(f"{what}: no JSON-RPC result in {final!r}")
    if expect_progress_first and (len(messages) < 2 or messages[0].get("method") != "notifications/progress"):
        raise BenchError(f"{what}: expected a progress event before the result, got {messages!r}")


def connect(url: str) -> tuple[http.client.HTTPConnection, str]:
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    return conn, "/" + path


def verify(setup: Setup) -> None:
    """Every target answers every route with a real result before anything is timed; a target
    with credential headers refuses (401 or 403) a request that lacks any of them."""
    for target in setup.targets:
        for route in ROUTES.values():
            body, headers = route.call()
            ex = _post(target, route, body, {**headers, **target.headers})
            check_result(ex, what=f"{target.name} -> {route.name}", expect_progress_first=route.streams)
        verify_credentials_required(target)
    if setup.azure is not None:
        used = setup.azure.requests_total()
        if not used["entra_jwks_fetches"] or not used["mi_token_requests"]:
            raise BenchError(f"the gateway did not use the emulated Entra JWKS and managed identity: {used}")


def verify_credentials_required(target: Target) -> None:
    """Without all its credentials, and without each one, a request through `target` is refused
    (401 for a missing token, 403 for a missing subscription key)."""
    if not target.credential_headers:
        return
    wanted = {h.lower() for h in target.credential_headers}
    cases = [("none of " + ", ".join(target.credential_headers), wanted)]
    cases += [(f"no {h}", {h.lower()}) for h in target.credential_headers] if len(wanted) > 1 else []
    body, headers = tools_call("add")
    for route in (ROUTES["raw"], ROUTES["sdk-json"]):
        for label, dropped in cases:
            sent = {k: v for k, v in {**headers, **target.headers}.items() if k.lower() not in dropped}
            ex = _post(target, route, body, sent)
            if ex.status not in (401, 403):
                raise BenchError(
                    f"{target.name} -> {route.name} with {label}: expected 401 or 403, got HTTP {ex.status} {ex.body[:300]!r}"
                )


def _post(target: Target, route: Route, body: bytes, headers: Mapping[str, str]) -> Exchange:
    conn, path = connect(target.url_for(route))
    try:
        return exchange(conn, path, body, headers)
    except (OSError, http.client.HTTPException) as exc:
        raise BenchError(f"{target.name} -> {route.name}: {type(exc).__name__}: {exc}") from None
    finally:
        conn.close()


# -- wrk ----------------------------------------------------------------------------------

_LUA = """\
wrk.method = "POST"
wrk.body = {body}
{headers}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) bad_status = 0; bad_body = 0; example = "" end
function response(status, headers, body)
  if status < 200 or status > 299 then
    bad_status = bad_status + 1
    if example == "" then example = status .. " " .. string.sub(body or "", 1, 300) end
  elseif not string.find(body, '"result"', 1, true) then
    bad_body = bad_body + 1
    if example == "" then example = status .. " " .. string.sub(body or "", 1, 300) end
  end
end
function done(summary, latency, requests)
  local bs, bb, ex = 0, 0, ""
  for _, t in ipairs(threads) do
    bs = bs + t:get("bad_status"); bb = bb + t:get("bad_body")
    if ex == "" then ex = t:get("example") end
  end
  local e = summary.errors
  io.write(string.format('WRKJSON {{"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,' ..
    '"timeouts":%d,"bad_status":%d,"bad_body":%d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout, bs, bb))
  io.write("WRKEXAMPLE " .. ex .. "\\n")
end
"""


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal for ASCII text


def wrk_script(directory: Path, name: str, body: bytes, headers: Mapping[str, str]) -> Path:
    lines = "\n".join(f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items())
    path = directory / f"wrk-{name}.lua"
    path.write_text(_LUA.format(body=_lua_string(body.decode()), headers=lines))
    return path


@dataclass
class LoadResult:
    backend: str
    target: str
    connections: int
    rep: int
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    proxy_cpu_us_per_req: float | None
    backend_cpu_us_per_req: float


def run_wrk(setup: Setup, target: Target, route: Route, *, connections: int, seconds: int, rep: int) -> LoadResult:
    body, headers = route.call()
    script = wrk_script(setup.tmp, f"{route.name}-{target.name.replace(':', '-')}", body, {**headers, **target.headers})
    url = target.url_for(route)
    backend = setup.backend(route)
    proxy_cpu0 = target.proxy.cpu_seconds() if target.proxy else 0.0
    backend_cpu0 = backend.cpu_seconds()
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    proxy_cpu = (target.proxy.cpu_seconds() - proxy_cpu0) if target.proxy else None
    backend_cpu = backend.cpu_seconds() - backend_cpu0
    setup.check_alive()
    stats = None
    example = ""
    for line in done.stdout.splitlines():
        if line.startswith("WRKJSON "):
            stats = json.loads(line[8:])
        elif line.startswith("WRKEXAMPLE "):
            example = line[11:]
    if done.returncode != 0 or stats is None:
        raise BenchError(f"wrk failed on {target.name} -> {route.name} ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    errors = {k: v for k, v in stats.items() if (k.endswith("_errors") or k in ("timeouts", "bad_status", "bad_body")) and v}
    if errors or stats["requests"] == 0:
        logs = f"\n{target.proxy.name} log:\n{target.proxy.log_tail()}" if target.proxy else ""
        raise BenchError(
            f"{target.name} -> {route.name} at c={connections}: errors {errors or 'no requests'}; first bad answer: {example!r}"
            f"\nwrk: {done.stdout.strip()[-1500:]}{logs}\n{backend.name} log:\n{backend.log_tail(10)}"
        )
    n = stats["requests"]
    return LoadResult(
        backend=route.name,
        target=target.name,
        connections=connections,
        rep=rep,
        requests=n,
        duration_s=stats["duration_us"] / 1e6,
        rps=n / (stats["duration_us"] / 1e6),
        p50_ms=stats["p50_us"] / 1000,
        p90_ms=stats["p90_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        max_ms=stats["max_us"] / 1000,
        proxy_cpu_us_per_req=proxy_cpu * 1e6 / n if proxy_cpu is not None else None,
        backend_cpu_us_per_req=backend_cpu * 1e6 / n,
    )


# -- SSE: time to the first event ----------------------------------------------------------


def first_event_times(setup: Setup, route: Route, samples: int) -> dict[str, list[float]]:
    """Seconds from sending a tools/call to holding its first complete SSE event (a progress
    notification the backend sends at once), per target, targets interleaved sample by sample."""
    body, headers = tools_call("progress_then_result", progress_token="p")
    conns = {t.name: connect(t.url_for(route)) for t in setup.targets}
    times: dict[str, list[float]] = {t.name: [] for t in setup.targets}
    try:
        for i in range(samples + 3):
            order = setup.targets[i % len(setup.targets) :] + setup.targets[: i % len(setup.targets)]
            for target in order:
                conn, path = conns[target.name]
                ex = exchange(conn, path, body, {**headers, **target.headers})
                check_result(ex, what=f"SSE {target.name} -> {route.name}", expect_progress_first=True)
                if i >= 3:  # the first rounds warm connections and code paths
                    assert ex.first_event_s is not None
                    times[target.name].append(ex.first_event_s)
    finally:
        for conn, _ in conns.values():
            conn.close()
    return times


# -- idle GET streams ------------------------------------------------------------------------


async def _open_idle_stream(url: str, headers: Mapping[str, str]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    conn_url = url.split("://", 1)[1]
    hostport, _, path = conn_url.partition("/")
    host, _, port = hostport.partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = [f"GET /{path} HTTP/1.1", f"Host: {hostport}", "Accept: text/event-stream", f"MCP-Protocol-Version: {PROTOCOL_VERSION}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" " or b"text/event-stream" not in head.lower():
        raise BenchError(f"idle GET stream to {url}: {head[:300]!r}")
    return reader, writer


async def _idle_streams(url: str, headers: Mapping[str, str], count: int, proxy: "Process", settle_s: float) -> dict[str, Any]:
    before = proxy.rss_kib()
    streams = []
    try:
        for start in range(0, count, 100):
            batch = [_open_idle_stream(url, headers) for _ in range(start, min(count, start + 100))]
            streams += await asyncio.gather(*batch)
        await asyncio.sleep(settle_s)
        during = proxy.rss_kib()
    finally:
        for _, writer in streams:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for _, w in streams), return_exceptions=True)
    return {"streams": count, "rss_before_kib": before, "rss_with_streams_kib": during, "kib_per_stream": (during - before) / count}


def idle_stream_memory(setup: Setup, count: int, settle_s: float = 0.5) -> dict[str, dict[str, Any]]:
    """RSS a proxy grows by per idle GET SSE stream held open through it (raw backend)."""
    route = ROUTES["raw"]
    results = {}
    for target in setup.targets:
        if target.proxy is None:
            continue
        results[target.name] = asyncio.run(_idle_streams(target.url_for(route), target.headers, count, target.proxy, settle_s))
        time.sleep(settle_s)  # let the proxy tear the streams down before the next one is measured
    return results


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))
