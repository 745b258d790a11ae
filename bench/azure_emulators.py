"""The emulated Azure a full-auth gateway variant needs: Entra ID and the managed identity endpoint.

These are the project's own test emulators (tests/emulators: EntraEmulator over HTTPS with a
trustme CA, ManagedIdentityEmulator over plain HTTP, as on Functions), run in daemon threads of
the benchmark process. The gateway only calls them while warming up: it fetches the JWKS for the
first token it validates and one managed-identity token for the first proxied request, then
answers from its caches (tokens here live 24 h; the JWKS is refreshed hourly, the run is shorter).
The threads are pinned with the rest of the benchmark process to the load generator's core, so
they never take CPU from the core the backends and proxies share; `requests_total()` before and
after the timed part shows whether the gateway called them during timing.

Needs the test dependencies (requirements-dev.txt: trustme) on top of the runtime ones.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

_TESTS = Path(__file__).resolve().parent.parent / "tests"
if str(_TESTS) not in sys.path:
    # Appended, not prepended: bench/backends.py must keep shadowing tests/backends/.
    sys.path.append(str(_TESTS))

from emulators.entra import EntraEmulator  # noqa: E402
from emulators.managed_identity import ManagedIdentityEmulator  # noqa: E402
from emulators.tls import TestPKI  # noqa: E402

TOKEN_LIFETIME_S = 24 * 3600


class AzureEmulators:
    """A test CA, an Entra tenant and the Functions managed-identity endpoint, in this process."""

    def __init__(self, directory: Path) -> None:
        self.pki = TestPKI(directory)
        self.entra = EntraEmulator(self.pki, token_lifetime=TOKEN_LIFETIME_S)
        self.mi = ManagedIdentityEmulator(self.entra, token_lifetime=TOKEN_LIFETIME_S)
        self._tokens: dict[str, str] = {}

    def __enter__(self) -> "AzureEmulators":
        self.entra.start()
        try:
            self.mi.start()
        except BaseException:
            self.entra.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.mi.stop()
        finally:
            self.entra.stop()
            self.pki.close()

    def bearer_token(self, audience: str, lifetime_s: int = TOKEN_LIFETIME_S) -> str:
        """One user token per audience (v2, signed by the tenant's active key), reused by every client."""
        if audience not in self._tokens:
            self._tokens[audience] = self.entra.mint({"aud": audience}, lifetime=lifetime_s)
        return self._tokens[audience]

    def placeholders(self, options: Mapping[str, Any]) -> dict[str, str]:
        """What a variant file may name as {placeholder} in its strings."""
        audience = str(options.get("tokenAudience", "api://mcp-gateway"))
        lifetime = int(options.get("tokenLifetimeSeconds", TOKEN_LIFETIME_S))
        return {
            "tenantId": self.entra.tenant_id,
            "authorityHost": self.entra.authority_host,
            "caBundle": self.pki.ca_path,
            "identityEndpoint": self.mi.endpoint,
            "identityHeader": self.mi.secret,
            "bearerToken": self.bearer_token(audience, lifetime),
        }

    def requests_total(self) -> dict[str, int]:
        """Requests each emulator has handled so far (JWKS and OpenID config fetches, MI tokens)."""
        return {
            "entra_requests": self.entra.requests.count(),
            "mi_requests": self.mi.requests.count(),
            "entra_jwks_fetches": self.entra.jwks_fetches,
            "entra_openid_config_fetches": self.entra.openid_config_fetches,
            "entra_token_requests": len(self.entra.token_requests),
            "mi_token_requests": len(self.mi.token_requests),
        }
