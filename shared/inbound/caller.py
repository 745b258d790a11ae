"""Who is calling: the one typed result of inbound auth, handed to later stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Caller:
    """A caller that passed the server's inbound checks.

    `token` is the validated bearer token itself, kept only for on-behalf-of
    exchanges; it never appears in repr, logs or error bodies.
    """

    subscription: str | None = None
    subject: str | None = None
    object_id: str | None = None
    app_id: str | None = None
    tenant_id: str | None = None
    issuer: str | None = None
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)
    token: str | None = field(default=None, repr=False)
    token_expires_at: float | None = None

    @property
    def anonymous(self) -> bool:
        return self.subscription is None and self.subject is None

    @property
    def user_key(self) -> str | None:
        """A stable per-user key for caches (tenant + object id, else issuer + subject)."""
        if self.object_id:
            return f"{self.tenant_id}:{self.object_id}"
        if self.subject:
            return f"{self.issuer}:{self.subject}"
        return None

    def describe(self) -> str:
        """For logs: names, never secrets."""
        parts = []
        if self.subscription:
            parts.append(f"subscription={self.subscription}")
        if self.subject:
            parts.append(f"sub={self.subject}")
        if self.app_id:
            parts.append(f"app={self.app_id}")
        return " ".join(parts) or "anonymous"


ANONYMOUS = Caller()
