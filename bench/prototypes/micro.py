"""Per-request cost of each step of the gateway's hot path, in isolation (timeit).

    .venv/bin/python bench/prototypes/micro.py

Numbers are microseconds per call on the machine that runs it; they rank the steps, they do not
add up to the end-to-end cost (which also pays for the event loop and syscalls).
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import logging
import os
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx  # noqa: E402
from starlette.requests import Request  # noqa: E402

from shared.config import parse_config  # noqa: E402
from shared.guard import HostGuard  # noqa: E402
from shared.headers import INBOUND_CREDENTIAL_HEADERS, downstream_headers, new_traceparent, upstream_headers  # noqa: E402

HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"accept", b"application/json, text/event-stream"),
    (b"content-type", b"application/json"),
    (b"mcp-protocol-version", b"2026-07-28"),
    (b"mcp-method", b"tools/call"),
    (b"mcp-name", b"add"),
    (b"content-length", b"215"),
]
RESPONSE_HEADERS = [(b"date", b"Thu, 26 Nov 2026 09:36:03 GMT"), (b"server", b"uvicorn"), (b"content-type", b"application/json"), (b"content-length", b"137")]
SCOPE = {
    "type": "http", "http_version": "1.1", "method": "POST", "scheme": "http", "path": "/mcp/raw", "raw_path": b"/mcp/raw",
    "query_string": b"", "root_path": "", "headers": HEADERS, "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 8000),
}
CONFIG = parse_config({"servers": {"raw": {"url": "http://127.0.0.1:9000/mcp", "anonymous": True}}})


def per_call_us(fn, number: int = 20000) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    guard = HostGuard.from_settings(CONFIG.gateway, {})
    client = httpx.AsyncClient(timeout=httpx.Timeout(None), trust_env=False)
    request_up = client.build_request("POST", "http://127.0.0.1:9000/mcp", headers=HEADERS, content=b"x" * 215)
    response = httpx.Response(200, headers=RESPONSE_HEADERS, request=request_up)

    devnull = logging.getLogger("micro.access")
    handler = logging.FileHandler(os.devnull)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    devnull.addHandler(handler)
    devnull.setLevel(logging.INFO)
    devnull.propagate = False

    async def timeout_block():
        async with asyncio.timeout(60):
            pass

    loop = asyncio.new_event_loop()

    def run_timeout():
        loop.run_until_complete(timeout_block())

    async def nothing():
        pass

    def run_nothing():
        loop.run_until_complete(nothing())

    steps = {
        "starlette Request(scope) + headers.get x2 + url.path + method": lambda: (
            lambda r: (r.headers.get("host"), r.headers.get("origin"), r.url.path, r.method)
        )(Request(SCOPE)),
        "scope access instead (headers scan, path, method)": lambda: (
            [v for k, v in SCOPE["headers"] if k == b"host"], SCOPE["path"], SCOPE["method"]
        ),
        "HostGuard.check_host + check_origin(None)": lambda: (guard.check_host("127.0.0.1:8000"), guard.check_origin(None)),
        "upstream_headers (incl. traceparent)": lambda: upstream_headers(HEADERS, client_ip="127.0.0.1", scheme="http", dropped=INBOUND_CREDENTIAL_HEADERS),
        "  of which new_traceparent (random.getrandbits)": new_traceparent,
        "  for comparison: from one os.urandom(24)": lambda: (lambda b: b"00-" + b[:16].hex().encode() + b"-" + b[16:].hex().encode() + b"-01")(os.urandom(24)),
        "downstream_headers": lambda: downstream_headers(RESPONSE_HEADERS),
        "httpx client.build_request (URL parse, header merge)": lambda: client.build_request("POST", "http://127.0.0.1:9000/mcp", headers=HEADERS, content=b"x"),
        "httpx.Request(...) direct, prebuilt httpx.URL": (lambda u: lambda: httpx.Request("POST", u, headers=HEADERS, content=b"x"))(httpx.URL("http://127.0.0.1:9000/mcp")),
        "httpx cookies.extract_cookies(response) (every send)": lambda: client.cookies.extract_cookies(response),
        "httpx.Response(...) from raw headers": lambda: httpx.Response(200, headers=RESPONSE_HEADERS),
        "response.headers.raw + content-type lookup": lambda: (response.headers.raw, response.headers.get("content-type", "")),
        "access log line at INFO (formatted, to /dev/null)": lambda: devnull.info("%s %s server=%s status=%s ms=%.1f", "POST", "/mcp/raw", "raw", 200, 1.234),
        "access log call with level off (isEnabledFor)": lambda: devnull.isEnabledFor(logging.DEBUG),
        "asyncio.timeout() enter/exit (+ loop round trip)": run_timeout,
        "  loop round trip alone": run_nothing,
    }
    width = max(map(len, steps))
    for name, fn in steps.items():
        print(f"{name:<{width}}  {per_call_us(fn, 5000 if 'asyncio' in name or 'loop' in name else 20000):7.2f} us")
    loop.close()


if __name__ == "__main__":
    main()
