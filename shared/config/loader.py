"""Schema validation, the checks a schema cannot express, and building the typed config."""

from __future__ import annotations

import functools
import json
import re
import logging
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from ..authority import HostPattern, MalformedAuthority, parse_origin
from ..errors import ConfigError
from ..settings import env
from .inbound import build_inbound, build_subscriptions
from .openapi import build_openapi
from .policy import build_policy
from .model import (
    HOP_BY_HOP,
    CorsPolicy,
    GatewayConfig,
    GatewaySettings,
    MemoryStoreConfig,
    ServerConfig,
    SignInSettings,
    StoreConfig,
    TableStoreConfig,
    Timeouts,
)
from .outbound import build_outbound, check_outbound_against_auth

logger = logging.getLogger("shared.config")

SCHEMA_DIR = Path(__file__).with_name("schema")
SCHEMA_PATH = SCHEMA_DIR / "config.schema.json"
_SCHEMA_BASE = "https://mcp-gateway.invalid/schema/"
_RESERVED_STATIC_HEADERS = HOP_BY_HOP | {
    "host",
    "content-length",
    "authorization",
    "cookie",
    # set by the gateway itself from what it checked
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
}
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    """The published schema files, linked by relative $refs as an editor sees them."""
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.schema.json")):
        document = {**json.loads(path.read_text()), "$id": _SCHEMA_BASE + path.name}
        resources.append((_SCHEMA_BASE + path.name, Resource.from_contents(document, default_specification=DRAFT202012)))
    registry = Registry().with_resources(resources)
    root = registry.contents(_SCHEMA_BASE + SCHEMA_PATH.name)
    return jsonschema.Draft202012Validator(root, registry=registry)


def _field_path(path: Any) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"


def _describe(error: jsonschema.ValidationError) -> tuple[str, str]:
    """(field, message) for one schema error, phrased for a person."""
    where = _field_path(error.absolute_path)
    if error.validator == "unevaluatedProperties":
        names = ", ".join(repr(name) for name in re.findall(r"'([^']+)'", error.message.split("(")[-1]))
        return (where, f"unknown field {names}")
    if error.validator == "oneOf":
        kinds = [branch.get("required", []) for branch in error.validator_value]
        if all(len(branch) == 1 and len(required) == 1 for branch, required in zip(error.validator_value, kinds)):
            # the forms are told apart by one field each (a server's url or openapi)
            names = [required[0] for required in kinds]
            given = [n for n in names if isinstance(error.instance, dict) and n in error.instance]
            if not given:
                others = " or ".join(repr(n) for n in names[1:])
                return (f"{where}.{names[0]}", f"is required (or {others})")
            return (where, f"give only one of {', '.join(repr(n) for n in given)}")
        return (where, "matches none of its documented forms (see the schema's description)")
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        names = ", ".join(repr(e) for e in extra)
        return (where, f"unknown field {names}") if where != "(root)" else (names, "unknown field")
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return (f"{where}.{missing}" if where != "(root)" else missing, "is required")
    if error.validator == "pattern" and isinstance(error.instance, str) and _CONTROL.search(error.instance):
        return (where, "must not contain control characters (CR, LF, NUL, ...): they would end or split the header")
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
    if "openapi" in raw:
        _check_url(f"{prefix}.openapi.baseUrl", raw["openapi"]["baseUrl"])
        for proxy_only in ("transport", "messageUrl"):
            if proxy_only in raw:
                raise ConfigError(f"{prefix}.{proxy_only}", "only applies to MCP servers (url), not to openapi")
    else:
        _check_url(f"{prefix}.url", raw["url"])
    if "messageUrl" in raw:
        if raw.get("transport") != "sse":
            raise ConfigError(f"{prefix}.messageUrl", "only applies to transport 'sse'")
        _check_url(f"{prefix}.messageUrl", raw["messageUrl"])
    for header in raw.get("headers", {}):
        if header.lower() in _RESERVED_STATIC_HEADERS:
            raise ConfigError(f"{prefix}.headers.{header}", "this header cannot be set statically")
    if raw.get("anonymous") is True and "auth" in raw:
        raise ConfigError(f"{prefix}.anonymous", "a server with auth cannot also be anonymous")
    if raw.get("anonymous") is not True and "auth" not in raw:
        raise ConfigError(
            f"{prefix}.anonymous",
            "no inbound auth is declared: add \"auth\", or say \"anonymous\": true to let any caller in",
        )
    check_outbound_against_auth(raw.get("outbound"), raw.get("auth"), f"{prefix}.outbound")
    if "policy" in raw and ("openapi" in raw or raw.get("transport") == "sse"):
        raise ConfigError(f"{prefix}.policy", "applies to streamable-http MCP servers ('url') only")


def _build_server(name: str, raw: Mapping[str, Any], base_dir: Path | None) -> ServerConfig:
    t = raw.get("timeouts", {})
    openapi = build_openapi(raw["openapi"], f"servers.{name}.openapi", base_dir) if "openapi" in raw else None
    return ServerConfig(
        name=name,
        url=openapi.base_url if openapi else raw["url"],
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
        auth=build_inbound(raw.get("auth"), f"servers.{name}.auth"),
        outbound=build_outbound(raw.get("outbound"), f"servers.{name}.outbound"),
        openapi=openapi,
        policy=build_policy(raw.get("policy"), f"servers.{name}.policy"),
    )


def _check_gateway(raw: Mapping[str, Any]) -> None:
    """Host patterns and origins parse as the guard will parse requests; CORS cannot open the guard alone."""
    for i, host in enumerate(raw.get("allowedHosts", ())):
        if host != "*":
            _parse_or_fail(f"gateway.allowedHosts[{i}]", HostPattern.parse, host, "is not a host, host:port or *.suffix")
    origins = [("gateway.allowedOrigins", raw.get("allowedOrigins", ()))]
    origins.append(("gateway.cors.allowOrigins", raw.get("cors", {}).get("allowOrigins", ())))
    for field_name, values in origins:
        for i, origin in enumerate(values):
            if origin != "*":
                _parse_or_fail(f"{field_name}[{i}]", parse_origin, origin, "is not an origin (http(s)://host[:port])")
    if "*" in raw.get("cors", {}).get("allowOrigins", ()) and "*" not in raw.get("allowedOrigins", ()):
        raise ConfigError(
            "gateway.cors.allowOrigins",
            "'*' would let any web page call the gateway: name the origins, or say '*' in gateway.allowedOrigins too",
        )
    if "publicBaseUrl" in raw:
        _parse_or_fail(
            "gateway.publicBaseUrl", parse_origin, raw["publicBaseUrl"], "is not scheme://host[:port] (no path)"
        )


def _parse_or_fail(field_name: str, parse: Callable[[str], Any], value: str, message: str) -> None:
    try:
        parse(value)
    except MalformedAuthority:
        raise ConfigError(field_name, f"{value!r} {message}") from None


def _build_gateway(raw: Mapping[str, Any]) -> GatewaySettings:
    cors = raw.get("cors")
    return GatewaySettings(
        allowed_hosts=tuple(raw.get("allowedHosts", ())),
        allowed_origins=tuple(raw.get("allowedOrigins", ())),
        cors=CorsPolicy(tuple(cors["allowOrigins"]), int(cors.get("maxAgeSeconds", 600))) if cors else None,
        max_body_bytes=int(raw.get("maxBodyBytes", GatewaySettings.max_body_bytes)),
        keep_alive_seconds=float(raw.get("keepAliveSeconds", GatewaySettings.keep_alive_seconds)),
        public_base_url=raw.get("publicBaseUrl"),
        docs_url=raw.get("docsUrl", GatewaySettings.docs_url),
        trust_forwarded_headers=raw.get("trustForwardedHeaders", False),
        ca_bundle=raw.get("caBundle"),
        key_vault_url=raw.get("keyVaultUrl"),
        key_cache_seconds=float(raw.get("keyCacheSeconds", GatewaySettings.key_cache_seconds)),
        max_request_head_bytes=int(raw.get("maxRequestHeadBytes", GatewaySettings.max_request_head_bytes)),
        max_request_headers=int(raw.get("maxRequestHeaders", GatewaySettings.max_request_headers)),
        request_head_timeout_seconds=float(
            raw.get("requestHeadTimeoutSeconds", GatewaySettings.request_head_timeout_seconds)
        ),
        body_idle_timeout_seconds=float(raw.get("bodyIdleTimeoutSeconds", GatewaySettings.body_idle_timeout_seconds)),
        min_body_bytes_per_second=float(raw.get("minBodyBytesPerSecond", GatewaySettings.min_body_bytes_per_second)),
        sign_in=_build_sign_in(raw.get("signIn", {})),
        store=_build_store(raw.get("store", {"memory": {}})),
    )


def _build_sign_in(raw: Mapping[str, Any]) -> SignInSettings:
    return SignInSettings(
        client_metadata_documents=raw.get("clientMetadataDocuments", True),
        dynamic_client_registration=raw.get("dynamicClientRegistration", True),
        allow_private_network_client_metadata=raw.get("allowPrivateNetworkClientMetadata", False),
    )


def _build_store(raw: Mapping[str, Any]) -> StoreConfig:
    if "tableStorage" in raw:
        table = raw["tableStorage"]
        _check_url("gateway.store.tableStorage.endpoint", table["endpoint"])
        return TableStoreConfig(
            endpoint=table["endpoint"].rstrip("/"), table=table.get("table", "mcpgateway"), client_id=table.get("clientId")
        )
    return MemoryStoreConfig()


def parse_config(document: Any, *, base_dir: Path | None = None) -> GatewayConfig:
    """Validate a decoded JSON document and build the typed config.

    `base_dir` is where relative file paths in it (OpenAPI documents) are taken from:
    the config file's folder; the working directory when None.
    """
    # A failing allOf branch also leaves its fields "unevaluated": report the real error first.
    errors = sorted(
        _validator().iter_errors(document),
        key=lambda e: (e.validator == "unevaluatedProperties", len(e.absolute_path), list(map(str, e.path))),
    )
    if errors:
        raise ConfigError(*_describe(errors[0]))
    _check_gateway(document.get("gateway", {}))
    for name, raw in document["servers"].items():
        _check_server(name, raw)
    servers = {name: _build_server(name, raw, base_dir) for name, raw in document["servers"].items()}
    subscriptions = build_subscriptions(document.get("subscriptions", {}), set(servers))
    return GatewayConfig(
        servers=MappingProxyType(servers),
        gateway=_build_gateway(document.get("gateway", {})),
        subscriptions=MappingProxyType(subscriptions),
    )


def load_config_text(text: str, source: str, *, base_dir: Path | None = None) -> GatewayConfig:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(source, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    return parse_config(document, base_dir=base_dir)


def load_config_file(path: str | Path) -> GatewayConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config file: {exc.strerror}") from None
    return load_config_text(text, str(path), base_dir=Path(path).resolve().parent)


def load_config_from_env(environ: Mapping[str, str] | None = None, *, base_dir: Path | None = None) -> GatewayConfig:
    """MCP_GATEWAY_CONFIG holds a file path (relative to `base_dir`), or the JSON document itself."""
    value = env("MCP_GATEWAY_CONFIG", environ)
    if value is None:
        raise ConfigError("MCP_GATEWAY_CONFIG", "is not set: give a config file path or inline JSON")
    if value.lstrip().startswith("{"):
        return load_config_text(value, "MCP_GATEWAY_CONFIG", base_dir=base_dir)
    path = Path(value)
    return load_config_file(base_dir / path if base_dir and not path.is_absolute() else path)


def warn_about_risks(config: GatewayConfig) -> None:
    """Start-up warnings for settings that are allowed but deserve a second look."""
    for server in config.servers.values():
        if server.anonymous:
            logger.warning("server %r is anonymous: any caller that reaches the gateway can use it", server.name)
    if "*" in config.gateway.allowed_hosts:
        logger.warning("gateway.allowedHosts contains '*': DNS-rebinding protection is off")
    if "*" in config.gateway.allowed_origins:
        logger.warning("gateway.allowedOrigins contains '*': any web page may call the gateway")
    if config.gateway.cors and "*" in config.gateway.cors.allow_origins:
        logger.warning("gateway.cors.allowOrigins contains '*': any web page may read the gateway's answers")
    sign_in = [s.name for s in config.servers.values() if s.auth and s.auth.entra and s.auth.entra.sign_in]
    if sign_in and config.gateway.sign_in.allow_private_network_client_metadata:
        logger.warning(
            "gateway.signIn.allowPrivateNetworkClientMetadata is on: client metadata documents are fetched from "
            "private and loopback addresses too (for tests only: it opens the gateway's network to its callers)"
        )
    if config.gateway.trust_forwarded_headers:
        logger.warning(
            "gateway.trustForwardedHeaders is on: only safe behind a proxy that sets X-Forwarded-Proto and "
            "X-Forwarded-Host on every request"
        )
