"""The Azure Functions front door: the gateway of one worker process, built at import.

A bad config must not fail the import: the host would then index no function, and
every route, /healthz included, would answer 404 with nothing to say why. Instead the
error is logged at CRITICAL and every request answers 503 naming it, so a deployment
with a broken config is visible from the outside at once.

Start-up checks (the Key Vault secrets the config names) run on the worker's event
loop as soon as it runs them, and fail the way they do on the local server: the same
log line, and /healthz answers 503 until a new instance starts.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from starlette.requests import Request

from .app import Gateway, create_app
from .config import load_config_from_env, warn_about_risks
from .errors import ConfigError, GatewayMisconfigured, error_response
from .telemetry import configure_logging

APP_ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger("shared.functions")


@dataclass
class FrontDoor:
    gateway: Gateway | None
    config_error: ConfigError | None = None
    _startup: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "FrontDoor":
        configure_logging(environ)
        try:
            # Azure's working directory is not promised to be the app root: a relative
            # config path means "deployed beside function_app.py".
            config = load_config_from_env(environ, base_dir=APP_ROOT)
            warn_about_risks(config)
            door = cls(create_app(config, environ=environ))
        except ConfigError as error:
            logger.critical("the gateway config is invalid, every request answers 503: %s", error)
            return cls(None, error)
        legacy = [s.name for s in config.servers.values() if s.transport == "sse" and s.message_url is None]
        if legacy and not door.gateway.message_endpoints.signer.shared:  # type: ignore[union-attr]
            logger.warning(
                "legacy SSE server(s) %s: without MCP_GATEWAY_SIGNING_KEY, a message posted to another "
                "instance than the one that opened its stream is refused",
                ", ".join(sorted(legacy)),
            )
        door.start()
        return door

    def start(self) -> None:
        """Run the start-up checks on the running loop (the worker imports us inside one)."""
        if self.gateway is None or self._startup is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # imported outside a loop (tests, tools): started by the first request
        self._startup = loop.create_task(self.gateway.startup())

    async def handle(self, request: Request) -> Any:
        if self.gateway is None:
            assert self.config_error is not None
            return error_response(GatewayMisconfigured(f"the gateway config is invalid: {self.config_error}"))
        if self._startup is None:
            self.start()
        return await self.gateway.handle(request)
