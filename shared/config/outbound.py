"""Outbound (backend credential) config. Filled in by the outbound credentials work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class OutboundConfig:
    """Placeholder until the outbound modes land: no backend credential."""


def build_outbound(raw: Mapping[str, Any] | None, prefix: str) -> OutboundConfig | None:
    return None
