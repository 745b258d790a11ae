"""Shared fixtures: real servers on 127.0.0.1, each stopped by the test that started it."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
from starlette.types import ASGIApp

from emulators.fixtures import *  # noqa: F401,F403  (Entra, managed identity, Key Vault emulators)
from emulators.server import BackgroundServer
from shared.app import create_app
from shared.config import parse_config

StartServer = Callable[..., BackgroundServer]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start an ASGI app with uvicorn in a thread; stopped at the end of the test."""
    started: list[BackgroundServer] = []

    def start(app: ASGIApp, *, lifespan: str = "on") -> BackgroundServer:
        server = BackgroundServer(app, lifespan=lifespan).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def start_gateway(start_server: StartServer) -> Callable[..., str]:
    """Start the gateway for a config document; returns its base URL."""

    def start(document: dict[str, Any], environ: dict[str, str] | None = None) -> str:
        app = create_app(parse_config(document), environ=environ or {})
        return start_server(app).base_url

    return start
