"""The process-wide gateway for the Azure Functions front door.

Built once from the app settings on first use; a bad config raises at that point
with the field named, which the Functions host logs.
"""

from __future__ import annotations

from .app import Gateway, create_app
from .config import load_config_from_env, warn_about_risks
from .telemetry import configure_logging

_gateway: Gateway | None = None


def gateway() -> Gateway:
    global _gateway
    if _gateway is None:
        configure_logging()
        config = load_config_from_env()
        warn_about_risks(config)
        _gateway = create_app(config)
    return _gateway
