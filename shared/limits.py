"""Bounds on what a client may send: the request head and the request body.

Each front door enforces what it can: the local server bounds the head's time and
bytes as they arrive (serving.py), the app checks the head it is given (so every
front door is bounded) and reads the body within its time and size (body.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Scope

from .config import GatewaySettings
from .errors import HeadersTooLarge


@dataclass(frozen=True, slots=True)
class HeadLimits:
    max_bytes: int = GatewaySettings.max_request_head_bytes
    """Request target plus every header name and value."""
    max_headers: int = GatewaySettings.max_request_headers
    timeout: float = GatewaySettings.request_head_timeout_seconds

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> "HeadLimits":
        return cls(settings.max_request_head_bytes, settings.max_request_headers, settings.request_head_timeout_seconds)

    def check(self, scope: Scope) -> None:
        """The head an ASGI server handed over, measured as the local server measures it."""
        headers = scope["headers"]
        if len(headers) > self.max_headers:
            raise self.too_many()
        size = len(scope.get("raw_path") or scope["path"]) + len(scope.get("query_string", b""))
        for name, value in headers:
            size += len(name) + len(value)
        if size > self.max_bytes:
            raise self.too_large()

    def too_many(self) -> HeadersTooLarge:
        return HeadersTooLarge(f"more than {self.max_headers} request headers")

    def too_large(self) -> HeadersTooLarge:
        return HeadersTooLarge(f"request head over the {self.max_bytes}-byte limit")


@dataclass(frozen=True, slots=True)
class BodyLimits:
    max_bytes: int = GatewaySettings.max_body_bytes
    idle_seconds: float = GatewaySettings.body_idle_timeout_seconds
    """Longest wait for the next chunk; also the time any body may take before the rate counts."""
    min_rate: float = GatewaySettings.min_body_bytes_per_second
    """Bytes per second, averaged over the time spent waiting for the client."""

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> "BodyLimits":
        return cls(settings.max_body_bytes, settings.body_idle_timeout_seconds, settings.min_body_bytes_per_second)
