"""Who is calling: made by inbound auth, read by every later stage (outbound, policy, audit).

A neutral module, so that reading a Caller does not import the inbound package."""

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
    def user_key(self) -> str | None:
        """A stable per-user key for caches (tenant + object id, else issuer + subject)."""
        if self.object_id:
            return f"{self.tenant_id}:{self.object_id}"
        if self.subject:
            return f"{self.issuer}:{self.subject}"
        return None


ANONYMOUS = Caller()
