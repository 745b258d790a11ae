"""Load and validate the gateway config into immutable typed objects.

The JSON Schema (config.schema.json, published for editors) is the single source of
the shape; the checks it cannot express sit in `_check_server`. Every error names
the field, so a bad deployment fails at start-up with a message a person can act on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Mapping
from urllib.parse import urlsplit

import jsonschema

from .errors import ConfigError
from .settings import env

logger = logging.getLogger("shared.config")

SCHEMA_PATH = Path(__file__).with_name("config.schema.json")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_RESERVED_STATIC_HEADERS = HOP_BY_HOP | {"host", "content-length", "authorization", "cookie"}

Transport = Literal["streamable-http", "sse"]


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    read: float = 60.0
    idle_stream: float = 3600.0


@dataclass(frozen=True)
class CorsPolicy:
    allow_origins: tuple[str, ...]
    max_age_seconds: int = 600


@dataclass(frozen=True)
class GatewaySettings:
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    cors: CorsPolicy | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    keep_alive_seconds: float = 20.0


@dataclass(frozen=True)
class ServerConfig:
    name: str
    url: str
    transport: Transport = "streamable-http"
    message_url: str | None = None
    anonymous: bool = False
    description: str = ""
    timeouts: Timeouts = Timeouts()
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def origin(self) -> str:
        """scheme://host[:port] of the backend, for same-origin checks."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class GatewayConfig:
    servers: Mapping[str, ServerConfig]
    gateway: GatewaySettings = field(default_factory=GatewaySettings)


def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def _field_path(path: Any) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"


def _describe(error: jsonschema.ValidationError) -> tuple[str, str]:
    """(field, message) for one schema error, phrased for a person."""
    where = _field_path(error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        names = ", ".join(repr(e) for e in extra)
        return (where, f"unknown field {names}") if where != "(root)" else (names, "unknown field")
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return (f"{where}.{missing}" if where != "(root)" else missing, "is required")
    if "propertyNames" in error.schema_path:
        return (where, f"invalid name {error.instance!r} (must match {error.validator_value})")
    if error.validator == "pattern" and str(error.schema.get("pattern", "")).startswith("^https?"):
        return (where, f"{error.instance!r} is not an http(s) URL")
    if error.validator == "type":
        return (where, f"must be of type {error.validator_value}, got {type(error.instance).__name__}")
    return (where, error.message)


def _check_url(field_name: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(field_name, f"{value!r} is not an http(s) URL with a host")
    if parts.username or parts.password:
        raise ConfigError(field_name, "credentials in the URL are not allowed; use outbound auth")


def _check_server(name: str, raw: Mapping[str, Any]) -> None:
    prefix = f"servers.{name}"
    _check_url(f"{prefix}.url", raw["url"])
    if "messageUrl" in raw:
        if raw.get("transport") != "sse":
            raise ConfigError(f"{prefix}.messageUrl", "only applies to transport 'sse'")
        _check_url(f"{prefix}.messageUrl", raw["messageUrl"])
    for header in raw.get("headers", {}):
        if header.lower() in _RESERVED_STATIC_HEADERS:
            raise ConfigError(f"{prefix}.headers.{header}", "this header cannot be set statically")
    if raw.get("anonymous") is not True:
        raise ConfigError(
            f"{prefix}.anonymous",
            "no inbound auth is declared; say \"anonymous\": true to let any caller in",
        )


def _build_server(name: str, raw: Mapping[str, Any]) -> ServerConfig:
    t = raw.get("timeouts", {})
    return ServerConfig(
        name=name,
        url=raw["url"],
        transport=raw.get("transport", "streamable-http"),
        message_url=raw.get("messageUrl"),
        anonymous=raw.get("anonymous", False),
        description=raw.get("description", ""),
        timeouts=Timeouts(
            connect=float(t.get("connect", Timeouts.connect)),
            read=float(t.get("read", Timeouts.read)),
            idle_stream=float(t.get("idleStream", Timeouts.idle_stream)),
        ),
        headers=tuple(raw.get("headers", {}).items()),
    )


def _build_gateway(raw: Mapping[str, Any]) -> GatewaySettings:
    cors = raw.get("cors")
    return GatewaySettings(
        allowed_hosts=tuple(raw.get("allowedHosts", ())),
        allowed_origins=tuple(raw.get("allowedOrigins", ())),
        cors=CorsPolicy(tuple(cors["allowOrigins"]), int(cors.get("maxAgeSeconds", 600))) if cors else None,
        max_body_bytes=int(raw.get("maxBodyBytes", GatewaySettings.max_body_bytes)),
        keep_alive_seconds=float(raw.get("keepAliveSeconds", GatewaySettings.keep_alive_seconds)),
    )


def parse_config(document: Any) -> GatewayConfig:
    """Validate a decoded JSON document and build the typed config."""
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: (len(e.absolute_path), list(map(str, e.path))))
    if errors:
        raise ConfigError(*_describe(errors[0]))
    for name, raw in document["servers"].items():
        _check_server(name, raw)
    servers = {name: _build_server(name, raw) for name, raw in document["servers"].items()}
    return GatewayConfig(servers=MappingProxyType(servers), gateway=_build_gateway(document.get("gateway", {})))


def load_config_text(text: str, source: str) -> GatewayConfig:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(source, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    return parse_config(document)


def load_config_file(path: str | Path) -> GatewayConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config file: {exc.strerror}") from None
    return load_config_text(text, str(path))


def load_config_from_env(environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """MCP_GATEWAY_CONFIG holds a file path, or the JSON document itself."""
    value = env("MCP_GATEWAY_CONFIG", environ)
    if value is None:
        raise ConfigError("MCP_GATEWAY_CONFIG", "is not set: give a config file path or inline JSON")
    if value.lstrip().startswith("{"):
        return load_config_text(value, "MCP_GATEWAY_CONFIG")
    return load_config_file(value)


def warn_about_risks(config: GatewayConfig) -> None:
    """Start-up warnings for settings that are allowed but deserve a second look."""
    for server in config.servers.values():
        if server.anonymous:
            logger.warning("server %r is anonymous: any caller that reaches the gateway can use it", server.name)
    if "*" in config.gateway.allowed_hosts:
        logger.warning("gateway.allowedHosts contains '*': DNS-rebinding protection is off")
    if "*" in config.gateway.allowed_origins:
        logger.warning("gateway.allowedOrigins contains '*': any web page may call the gateway")
