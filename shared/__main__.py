"""Command line: serve, demo, config check.

    python -m shared serve [--config FILE] --port N [--host H]   (default: MCP_GATEWAY_CONFIG)
    python -m shared demo [--port N]
    python -m shared config check FILE
    python -m shared keys new NAME
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import ipaddress
import json
import logging
import socket
import sys

import uvicorn

from .app import create_app
from .config import GatewayConfig, load_config_file, load_config_from_env, parse_config, warn_about_risks
from .errors import ConfigError
from .limits import HeadLimits
from .serving import bounded_protocol
from .telemetry import configure_logging


def _uvicorn_config(app, host: str, port: int, *, head: HeadLimits = HeadLimits()) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_level="warning",
        access_log=False,
        # The client address is the socket's: an inbound X-Forwarded-For is the caller's
        # claim, passed on as such, never trusted as the peer.
        proxy_headers=False,
        # No "server: uvicorn" on every answer: nothing for a scanner to fingerprint.
        server_header=False,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        # httptools, with the request head bounded in time and bytes (serving.py).
        http=bounded_protocol(head),
        # The gateway serves no WebSockets: no upgrade path, whatever is installed.
        ws="none",
        timeout_graceful_shutdown=5,
    )


class PortUnavailable(Exception):
    """The address to listen on cannot be had (in use, not ours): one line for the user."""


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailable(f"port {port} on {host} is in use: choose another with --port") from None
        raise PortUnavailable(f"cannot listen on {host}:{port} ({exc.strerror}): check --host and --port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


_WILDCARDS = ("0.0.0.0", "::", "")


def _host_pattern(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def reachable_names(host: str) -> list[str]:
    """The names a client may use for a server bound to `host`: the host itself, or for a
    wildcard bind this machine's name and addresses (loopback is always allowed)."""
    if host not in _WILDCARDS:
        return [host]
    names = [socket.gethostname(), socket.getfqdn()]
    try:
        names += [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)]
    except OSError:
        pass
    kept = []
    for name in dict.fromkeys(n.split("%")[0] for n in names if n):
        try:
            if ipaddress.ip_address(name).is_loopback:
                continue
        except ValueError:
            pass
        kept.append(name)
    return kept


def allow_bound_host(config: GatewayConfig, host: str) -> GatewayConfig:
    """The host the server binds, and prints, answers (not 421) without editing the config."""
    extra = tuple(_host_pattern(n) for n in reachable_names(host) if _host_pattern(n) not in config.gateway.allowed_hosts)
    if not extra:
        return config
    return dataclasses.replace(config, gateway=dataclasses.replace(config.gateway, allowed_hosts=config.gateway.allowed_hosts + extra))


def _public_url(host: str, port: int) -> str:
    if host in _WILDCARDS:
        host = next(iter(reachable_names(host)), "127.0.0.1")
    return f"http://{_host_pattern(host)}:{port}"


def cmd_serve(args: argparse.Namespace) -> int:
    config = load_config_file(args.config) if args.config else load_config_from_env()
    warn_about_risks(config)
    config = allow_bound_host(config, args.host)
    app = create_app(config)
    sock = _listening_socket(args.host, args.port)
    bound = sock.getsockname()[1]
    print(f"MCP gateway listening on http://{_host_pattern(args.host)}:{bound}", flush=True)
    if args.host in _WILDCARDS:
        print(f"Reachable as {_public_url(args.host, bound)}; other names need gateway.allowedHosts", flush=True)
    server = uvicorn.Server(_uvicorn_config(app, args.host, bound, head=HeadLimits.from_settings(config.gateway)))
    server.run(sockets=[sock])
    return 0


async def _run_demo(host: str, port: int) -> None:
    from .demo import DEMO_SERVER_NAME, build_demo_server, demo_config
    from .inbound.keys import new_key
    from .snippets import ClientSetup

    backend_sock = _listening_socket("127.0.0.1", 0)
    backend_port = backend_sock.getsockname()[1]
    backend_app = build_demo_server().streamable_http_app(streamable_http_path="/mcp")
    backend = uvicorn.Server(_uvicorn_config(backend_app, "127.0.0.1", backend_port))

    key = new_key()
    config = allow_bound_host(parse_config(demo_config(f"http://127.0.0.1:{backend_port}/mcp", key)), host)
    gateway_sock = _listening_socket(host, port)
    gateway_port = gateway_sock.getsockname()[1]
    gateway = uvicorn.Server(
        _uvicorn_config(create_app(config), host, gateway_port, head=HeadLimits.from_settings(config.gateway))
    )

    url = _public_url(host, gateway_port)
    setup = ClientSetup("gateway-demo", f"{url}/mcp/{DEMO_SERVER_NAME}")
    print(f"Demo MCP backend (MCP SDK server) on http://127.0.0.1:{backend_port}/mcp")
    print(f"MCP gateway on {url}\n\nMCP endpoint: {setup.url}")
    print(f"Subscription key (header {setup.header}): {key}\n")
    print(setup.all(key) + "\n\nCtrl+C stops both.", flush=True)
    await asyncio.gather(backend.serve(sockets=[backend_sock]), gateway.serve(sockets=[gateway_sock]))


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_run_demo(args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    config = load_config_file(args.file)
    warn_about_risks(config)
    names = ", ".join(sorted(config.servers))
    print(f"{args.file}: OK ({len(config.servers)} server(s): {names})")
    _check_openapi_documents(config, args.file)
    if args.resolve_secrets:
        from .inbound.keys import SubscriptionKeys
        from .outbound import check_secrets

        key_refs = SubscriptionKeys(config.subscriptions, None).secret_refs()
        count = asyncio.run(check_secrets(config, extra=key_refs))
        print(f"{args.file}: {count} Key Vault secret(s) readable")
    return 0


def _check_openapi_documents(config: GatewayConfig, source: str) -> None:
    """REST APIs' documents become tools here already, so a bad one fails before a deployment."""
    servers = [server for server in config.servers.values() if server.openapi is not None]
    if not servers:
        return
    from .openapi.server import load_tools

    for server in servers:
        assert server.openapi is not None
        if server.openapi.document_is_url:
            print(f"{source}: server {server.name!r}: its OpenAPI document is read from its URL at start-up")
            continue
        tools = asyncio.run(load_tools(server, None))
        print(f"{source}: server {server.name!r}: {len(tools)} tool(s) from its OpenAPI document")


def cmd_keys_new(args: argparse.Namespace) -> int:
    from .inbound.keys import key_digest, new_key

    key = new_key()
    entry = {args.name: {"servers": ["*"], "primaryKey": {"sha256": key_digest(key)}}}
    print(f"Subscription key for {args.name!r} (shown once; store it now):\n\n    {key}\n")
    print('Add this to "subscriptions" in the gateway config (narrow "servers" as needed):\n')
    print(json.dumps(entry, indent=2)[1:-1].strip("\n"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared", description="MCP gateway")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the gateway with uvicorn")
    serve.add_argument("--config", help="gateway config JSON file (default: the MCP_GATEWAY_CONFIG setting)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--host", default="127.0.0.1")
    serve.set_defaults(func=cmd_serve)

    demo = commands.add_parser("demo", help="run a demo MCP server behind the gateway")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--host", default="127.0.0.1")
    demo.set_defaults(func=cmd_demo)

    config = commands.add_parser("config", help="config tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate a config file")
    check.add_argument("file")
    check.add_argument(
        "--resolve-secrets", action="store_true", help="also read every Key Vault secret the config names"
    )
    check.set_defaults(func=cmd_config_check)

    keys = commands.add_parser("keys", help="subscription keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_commands.add_parser("new", help="print a fresh key once, with the config entry holding its hash")
    new.add_argument("name", help="subscription name")
    new.set_defaults(func=cmd_keys_new)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        return args.func(args)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    except PortUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
