"""The process-wide gateway for the Azure Functions front door.

Built once from the app settings on first use; a bad config raises at that point
with the field named, which the Functions host logs.
"""

from __future__ import annotations

from pathlib import Path

from .app import Gateway, create_app
from .config import load_config_from_env, warn_about_risks
from .telemetry import configure_logging

APP_ROOT = Path(__file__).resolve().parent.parent
_gateway: Gateway | None = None


def gateway() -> Gateway:
    global _gateway
    if _gateway is None:
        configure_logging()
        # Azure's working directory is not promised to be the app root: a relative
        # config path means "deployed beside function_app.py".
        config = load_config_from_env(base_dir=APP_ROOT)
        warn_about_risks(config)
        _gateway = create_app(config)
    return _gateway
