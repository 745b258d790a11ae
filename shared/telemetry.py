"""Logging set-up: plain structured lines on stderr, level from MCP_GATEWAY_LOG_LEVEL."""

from __future__ import annotations

import logging
from typing import Mapping

from .settings import env

_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
_REQUEST_LOGGERS = ("azure.core.pipeline.policies.http_logging_policy", "httpx")
"""Libraries that log the URL of every request they make at INFO: a Key Vault URL names the
vault and the secret, a token endpoint's the tenant. The Functions worker passes INFO on to
Application Insights, so they speak only when the operator asks for DEBUG."""


def configure_logging(environ: Mapping[str, str] | None = None) -> None:
    level = (env("MCP_GATEWAY_LOG_LEVEL", environ) or "INFO").upper()
    if level not in _LEVELS:
        level = "INFO"
    root = logging.getLogger("shared")
    root.setLevel(level)
    for name in _REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    access = (env("MCP_GATEWAY_ACCESS_LOG", environ) or "").lower() in ("1", "true", "on", "yes")
    logging.getLogger("shared.access").setLevel(logging.INFO if access else logging.WARNING)
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)
        root.propagate = False
