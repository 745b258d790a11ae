"""Cold start: what an MCP client's first connect waits for after a scale-out.

    .venv/bin/python bench/cold_start.py [--runs N] [--config FILE] [--no-worker] [--import-only]

Each figure is the median (and max) over N fresh processes on 127.0.0.1:

- import: `import function_app` in a fresh interpreter (what the Functions worker does
  when it indexes the app), split into the floor that is not the gateway's
  (`azure.functions` and `azurefunctions.extensions.http.fastapi`, which brings FastAPI,
  pydantic and uvicorn: function_app.py must import both, and the worker loads the
  extension for HTTP streams anyway) and the rest (the gateway: its modules, what they
  import, reading and validating the config, building the app); with the resident
  memory after the import and which of the optional stacks it loaded;
- first answer, local server: from spawning `python -m shared serve` to the first
  proxied answer (a JSON-RPC `initialize` through the gateway to the raw responder of
  bench/backends.py), polled every 2 ms;
- first answer, Functions worker: the same from spawning tests/functions_host.py, which
  runs function_app.py under the real Python worker library (indexing, function load,
  HTTP streams) behind a stand-in for the host. Needs .venv-worker (scripts/test
  installs it); the stand-in's own imports count too, as the host's start would.

The config defaults to one anonymous server; `--config` measures another, e.g.
bench/cold_start_features.json (Entra tokens in, a managed-identity token out: pyjwt,
msal and the Azure SDKs load), with `--import-only` when the first answer would need
credentials the benchmark does not have. The machine's
load average is printed before and after: the figures mean little on a busy machine.
The gateway's own modules are compiled from source in every process unless a
`__pycache__` is there to read (PYTHONDONTWRITEBYTECODE, or a read-only package as
Functions runs it from), so the figures include that compile, as a deployment pays it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
WORKER_LIBS = Path(os.environ.get("FUNCTIONS_WORKER_LIBS", ROOT / ".venv-worker"))
OPTIONAL_STACKS = (
    "azure.identity",
    "azure.keyvault",
    "azure.core",
    "aiohttp",
    "msal",
    "requests",
    "jwt",
    "cryptography",
)
"""Libraries only some configs need; the import reports which ones it loaded."""
IMPORT_PROBE = f"""
import json, resource, sys, time
started = time.perf_counter()
import azure.functions, azurefunctions.extensions.http.fastapi
floor = time.perf_counter()
import function_app
done = time.perf_counter()
print(json.dumps({{
    "floor": floor - started,
    "gateway": done - floor,
    "total": done - started,
    "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "modules": len(sys.modules),
    "stacks": [name for name in {OPTIONAL_STACKS!r} if name in sys.modules],
}}))
"""
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_import(config: Path, runs: int) -> list[dict]:
    env = {**os.environ, "MCP_GATEWAY_CONFIG": str(config), "PYTHON_ENABLE_INIT_INDEXING": "1", "PYTHONPATH": str(ROOT)}
    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        samples.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return samples


def measure_first_answer(config_for, runs: int, *, worker: bool) -> tuple[list[float], list[float] | None]:
    backend_port = free_port()
    backend = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "backends.py"), "raw", "--port", str(backend_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    local: list[float] = []
    functions: list[float] | None = [] if worker else None
    try:
        _wait(f"http://127.0.0.1:{backend_port}/mcp", backend)
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "gateway.json"
            config.write_text(json.dumps(config_for(f"http://127.0.0.1:{backend_port}/mcp")))
            for _ in range(runs):
                port = free_port()
                command = [sys.executable, "-m", "shared", "serve", "--config", str(config), "--port", str(port)]
                local.append(_time_to_first_answer(command, os.environ, port))
                if functions is not None:
                    port = free_port()
                    command = [sys.executable, str(ROOT / "tests" / "functions_host.py"), "--app-dir", str(ROOT), "--port", str(port)]
                    env = {**os.environ, "MCP_GATEWAY_CONFIG": str(config), "PYTHON_ENABLE_INIT_INDEXING": "1", "PYTHONPATH": str(ROOT)}
                    functions.append(_time_to_first_answer(command, env, port))
    finally:
        backend.terminate()
        backend.wait(10)
    return local, functions


def _time_to_first_answer(command: list[str], env, port: int) -> float:
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(f"http://127.0.0.1:{port}/mcp/bench", process)
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(10)


def _wait(url: str, proc: subprocess.Popen, *, timeout: float = 60) -> None:
    deadline = time.perf_counter() + timeout
    with httpx.Client(trust_env=False, timeout=5) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
            try:
                response = client.post(url, json=INITIALIZE, headers={"accept": "application/json, text/event-stream"})
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.perf_counter() > deadline:
                raise TimeoutError(url)
            time.sleep(0.002)  # poll interval of the measurement


def _load() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--config", type=Path, help="a gateway config whose server is named 'bench' ({url} is filled in)")
    parser.add_argument("--no-worker", action="store_true", help="skip the Functions worker measurement")
    parser.add_argument("--import-only", action="store_true", help="measure the import only (no first answer)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    worker = not (args.no_worker or args.import_only)
    if worker and not (WORKER_LIBS / "azure_functions_runtime").is_dir():
        print(f"no worker library in {WORKER_LIBS} (scripts/test installs it): skipping the worker path", file=sys.stderr)
        worker = False

    def config_for(url: str) -> dict:
        if args.config is None:
            return {"servers": {"bench": {"url": url, "anonymous": True}}}
        return json.loads(args.config.read_text().replace("{url}", url))

    load_before = _load()
    with tempfile.TemporaryDirectory() as tmp:
        import_config = Path(tmp) / "gateway.json"
        import_config.write_text(json.dumps(config_for("http://127.0.0.1:9/mcp")))
        imports = measure_import(import_config, args.runs)
    local, functions = ([], None) if args.import_only else measure_first_answer(config_for, args.runs, worker=worker)
    load_after = _load()

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.0f} ms (max {max(values) * 1000:.0f})"

    stacks = sorted({name for sample in imports for name in sample["stacks"]})
    print(f"load average (1/5/15 min) before: {load_before}; after: {load_after}; {args.runs} runs each\n")
    print("| measure | median (max) |\n|---|---|")
    print(f"| import function_app | {ms([s['total'] for s in imports])} |")
    print(f"| of which the floor: azure.functions + the FastAPI extension | {ms([s['floor'] for s in imports])} |")
    print(f"| of which the gateway | {ms([s['gateway'] for s in imports])} |")
    print(f"| max RSS after the import | {statistics.median(s['rss_kib'] for s in imports) / 1024:.0f} MiB |")
    print(f"| modules loaded | {statistics.median(s['modules'] for s in imports):.0f} |")
    print(f"| optional stacks loaded | {', '.join(stacks) or 'none'} |")
    if local:
        print(f"| process start to first proxied answer, local server | {ms(local)} |")
    if functions is not None:
        print(f"| process start to first proxied answer, Functions worker | {ms(functions)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
