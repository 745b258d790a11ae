"""Cold start: what an MCP client's first connect waits for after a scale-out.

    .venv/bin/python bench/cold_start.py [--runs N] [--config FILE]

Two figures, each the median (and max) over N fresh processes on 127.0.0.1:

- import: `import function_app` in a fresh interpreter (what the Functions worker does
  when it indexes the app), with its resident memory after the import;
- first answer: from spawning `python -m shared serve` to the first proxied answer
  (a JSON-RPC `initialize` through the gateway to the raw responder of
  bench/backends.py), polled every 2 ms.

The config defaults to one anonymous server; `--config` measures another (e.g. one
with Entra auth and a managed-identity outbound, which load more code).
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
IMPORT_PROBE = (
    "import time, resource; t = time.perf_counter(); import function_app; "
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
)
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_import(config: Path, runs: int) -> tuple[list[float], list[float]]:
    seconds, kib = [], []
    env = {**os.environ, "MCP_GATEWAY_CONFIG": str(config), "PYTHON_ENABLE_INIT_INDEXING": "1", "PYTHONPATH": str(ROOT)}
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        elapsed, rss = out.stdout.split()
        seconds.append(float(elapsed))
        kib.append(float(rss))
    return seconds, kib


def measure_first_answer(config_for: dict, runs: int) -> list[float]:
    backend_port = free_port()
    backend = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "backends.py"), "raw", "--port", str(backend_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    times = []
    try:
        _wait(f"http://127.0.0.1:{backend_port}/mcp", backend, post=True)
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "gateway.json"
            config.write_text(json.dumps(config_for(f"http://127.0.0.1:{backend_port}/mcp")))
            for _ in range(runs):
                port = free_port()
                started = time.perf_counter()
                gateway = subprocess.Popen(
                    [sys.executable, "-m", "shared", "serve", "--config", str(config), "--port", str(port)],
                    cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                try:
                    _wait(f"http://127.0.0.1:{port}/mcp/bench", gateway, post=True)
                    times.append(time.perf_counter() - started)
                finally:
                    gateway.terminate()
                    gateway.wait(10)
    finally:
        backend.terminate()
        backend.wait(10)
    return times


def _wait(url: str, proc: subprocess.Popen, *, post: bool, timeout: float = 30) -> None:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--config", type=Path, help="a gateway config whose server is named 'bench' ({url} is filled in)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    def config_for(url: str) -> dict:
        if args.config is None:
            return {"servers": {"bench": {"url": url, "anonymous": True}}}
        return json.loads(args.config.read_text().replace("{url}", url))

    with tempfile.TemporaryDirectory() as tmp:
        import_config = Path(tmp) / "gateway.json"
        import_config.write_text(json.dumps(config_for("http://127.0.0.1:9/mcp")))
        seconds, kib = measure_import(import_config, args.runs)
    first = measure_first_answer(config_for, args.runs)
    ms = lambda values: f"{statistics.median(values) * 1000:.0f} ms (max {max(values) * 1000:.0f})"  # noqa: E731
    print("| measure | median (max) |\n|---|---|")
    print(f"| import function_app | {ms(seconds)} |")
    print(f"| max RSS after the import | {statistics.median(kib) / 1024:.0f} MiB |")
    print(f"| process start to first proxied answer (local server) | {ms(first)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
