"""`secretHeader`: a static credential (API key, PAT) from Key Vault, in a named header."""

from __future__ import annotations

from starlette.types import Scope

from ..config.outbound import SecretHeaderOutbound
from ..errors import CredentialUnavailable
from ..caller import Caller
from .base import Machinery, RawHeaders


class SecretHeaderMode:
    def __init__(self, config: SecretHeaderOutbound, machinery: Machinery) -> None:
        self.config = config
        self.machinery = machinery
        self.name = config.header.lower().encode("ascii")

    async def headers(self, caller: Caller, request: Scope) -> RawHeaders:
        value = self.config.prefix + await self.machinery.secrets.get(self.config.secret)
        if "\r" in value or "\n" in value or not value.isprintable():
            raise CredentialUnavailable(
                f"Key Vault secret {self.config.secret.name!r}: not usable as a header value (control characters)", status=502
            )
        try:
            return [(self.name, value.encode("latin-1"))]
        except UnicodeEncodeError:
            raise CredentialUnavailable(
                f"Key Vault secret {self.config.secret.name!r}: not usable as a header value (not Latin-1)", status=502
            ) from None
