"""Load and validate the gateway config into immutable typed objects.

The JSON Schema files in schema/ (published for editors) are the single source of
the shape; loader.py adds the checks a schema cannot express. Every error names
the field, so a bad deployment fails at start-up with a message a person can act on.
"""

from .inbound import InboundAuth, Subscription
from .loader import (
    SCHEMA_PATH,
    load_config_file,
    load_config_from_env,
    load_config_text,
    parse_config,
    warn_about_risks,
)
from .model import HOP_BY_HOP, CorsPolicy, GatewayConfig, GatewaySettings, SecretRef, ServerConfig, Timeouts
from .openapi import OpenApiConfig, OperationSelection
from .outbound import OutboundConfig

__all__ = [
    "HOP_BY_HOP",
    "SCHEMA_PATH",
    "CorsPolicy",
    "GatewayConfig",
    "GatewaySettings",
    "InboundAuth",
    "OpenApiConfig",
    "OperationSelection",
    "OutboundConfig",
    "SecretRef",
    "ServerConfig",
    "Subscription",
    "Timeouts",
    "load_config_file",
    "load_config_from_env",
    "load_config_text",
    "parse_config",
    "warn_about_risks",
]
