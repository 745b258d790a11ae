"""The `openapi` server kind's config: a REST API the gateway serves as MCP tools.

    "openapi": {"document": "specs/petstore.yaml", "baseUrl": "https://petstore.internal/v3",
                "include": {"tags": ["pet"]}, "exclude": {"operationIds": ["deletePet"]}}

The document is only named here; reading it and turning it into tools is
shared/openapi's work, at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import ConfigError

DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class OperationSelection:
    """Operations named by operationId, or by any of their tags."""

    operation_ids: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()

    def matches(self, operation_id: str | None, tags: Iterable[str]) -> bool:
        return (operation_id is not None and operation_id in self.operation_ids) or not self.tags.isdisjoint(tags)


@dataclass(frozen=True)
class OpenApiConfig:
    document: str
    """An absolute file path, or an http(s) URL."""
    base_url: str
    include: OperationSelection | None = None
    """None: every operation."""
    exclude: OperationSelection = OperationSelection()
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    @property
    def document_is_url(self) -> bool:
        return self.document.startswith(("http://", "https://"))

    def selects(self, operation_id: str | None, tags: Iterable[str]) -> bool:
        tags = tuple(tags)
        if self.include is not None and not self.include.matches(operation_id, tags):
            return False
        return not self.exclude.matches(operation_id, tags)


def _selection(raw: Mapping[str, Any], field: str) -> OperationSelection:
    selection = OperationSelection(frozenset(raw.get("operationIds", ())), frozenset(raw.get("tags", ())))
    if not selection.operation_ids and not selection.tags:
        raise ConfigError(field, "names no operation: give operationIds or tags (or leave it out)")
    return selection


def build_openapi(raw: Mapping[str, Any], prefix: str, base_dir: Path | None) -> OpenApiConfig:
    """The typed section; a relative document path is taken from `base_dir` (the config file's folder)."""
    document = raw["document"]
    if not document.startswith(("http://", "https://")):
        if "://" in document:
            raise ConfigError(f"{prefix}.document", f"{document!r}: give a file path or an http(s) URL")
        path = Path(document)
        document = str(path if path.is_absolute() or base_dir is None else base_dir / path)
    return OpenApiConfig(
        document=document,
        base_url=raw["baseUrl"],
        include=_selection(raw["include"], f"{prefix}.include") if "include" in raw else None,
        exclude=_selection(raw["exclude"], f"{prefix}.exclude") if "exclude" in raw else OperationSelection(),
        max_response_bytes=int(raw.get("maxResponseBytes", DEFAULT_MAX_RESPONSE_BYTES)),
    )
