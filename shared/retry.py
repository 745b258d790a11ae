"""Bounded retries with backoff for the gateway's own calls (identity, token endpoints, Key Vault).

Each step says what is worth retrying by raising `Transient` (endpoint down, 5xx,
429); anything else is final at once. After the last attempt the caller gets one
`CredentialUnavailable`: 503 for a dependency that is down or throttling (try
later), 502 for an answer that will not change by retrying (wrong credential,
missing secret). Messages name the step; they never carry a secret.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

from .errors import CredentialUnavailable

logger = logging.getLogger("shared.retry")

T = TypeVar("T")


class Transient(Exception):
    """A failure that may pass: the endpoint was down, failing (5xx) or throttling (429)."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Permanent(Exception):
    """A refusal that retrying will not change (bad credential, unknown secret, invalid scope)."""

    def __init__(self, reason: str, *, status: int = 502) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    """Tries in all, the first included."""
    base_delay: float = 0.2
    """Backoff before the second try; doubled for each further try (with jitter)."""
    max_delay: float = 2.0
    """No single wait is longer. A Retry-After above it ends the retries at once (503 + Retry-After)."""

    def delay(self, retry: int) -> float:
        backoff = min(self.max_delay, self.base_delay * (2**retry))
        return backoff * (0.5 + random.random() / 2)


DEFAULT_POLICY = RetryPolicy()


async def with_retries(step: str, call: Callable[[], Awaitable[T]], policy: RetryPolicy = DEFAULT_POLICY) -> T:
    """Run `call`, retrying `Transient` failures within `policy`; `step` names it in errors."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return await call()
        except Permanent as failure:
            raise CredentialUnavailable(f"{step}: {failure.reason}", status=failure.status) from None
        except Transient as failure:
            retry_after = failure.retry_after
            if attempt == policy.attempts or (retry_after is not None and retry_after > policy.max_delay):
                headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else {}
                raise CredentialUnavailable(
                    f"{step}: {failure.reason} (gave up after {attempt} attempt{'s' if attempt > 1 else ''})",
                    status=503,
                    headers=headers,
                ) from None
            wait = retry_after if retry_after is not None else policy.delay(attempt - 1)
            # The step names a secret, a vault or a token endpoint: DEBUG only (docs/security.md).
            logger.warning("%s; retrying in %.2fs (attempt %d of %d)", failure.reason, wait, attempt, policy.attempts)
            logger.debug("retrying %s", step)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is treated as absent)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
