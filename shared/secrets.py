"""Key Vault secrets, read with the gateway's managed identity and kept for a while.

One store per gateway process: backend credentials (outbound) and subscription
keys held in Key Vault (inbound) both read through it.

- Vault: the reference's own `vault`, else `gateway.keyVaultUrl`, else the
  MCP_GATEWAY_KEY_VAULT_URL setting. Any https URL is accepted, so sovereign
  clouds work as they are (`https://NAME.vault.usgovcloudapi.net`,
  `https://NAME.vault.azure.cn`, ...): the SDK learns the token audience from the
  vault's own 401 challenge, and checks that the challenge's resource matches
  the vault's domain (a check turned off only for loopback addresses, where
  local emulators live).
- Identity: system-assigned, or the user-assigned identity named by AZURE_CLIENT_ID.
- Cache: each value is used for `gateway.keyCacheSeconds`, then read again, so a
  rotated secret reaches backends within that time without a restart. A pinned
  `version` is read the same way (a disabled version stops working the same way).
- Single flight: concurrent readers of one secret share one read.
- Failures: bounded retries (shared.retry), then CredentialUnavailable naming the
  secret, never its value.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import Iterable, Mapping
from urllib.parse import urlsplit

from azure.core.exceptions import ResourceNotFoundError
from azure.keyvault.secrets.aio import SecretClient

from .config import GatewaySettings, SecretRef
from .errors import ConfigError, CredentialUnavailable
from .identity import SDK_OPTIONS, AzureHttp, ManagedIdentity, classify
from .retry import DEFAULT_POLICY, Permanent, RetryPolicy, with_retries
from .settings import env

logger = logging.getLogger("shared.secrets")

_Key = tuple[str, str, str]  # vault url, lower-case name, version ("" = current)


def _is_loopback(host: str | None) -> bool:
    if host in (None, "localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback  # type: ignore[union-attr]
    except ValueError:
        return False


class _NotFound(Exception):
    """Key Vault answered 404: final, and reported apart so start-up can name the secret."""


class SecretMissing(CredentialUnavailable):
    """The vault has no such secret (or no such pinned version)."""

    def __init__(self, ref: SecretRef, vault: str) -> None:
        super().__init__(f"Key Vault secret {ref.name!r}: not found in {vault}", status=502)
        self.ref = ref
        self.vault = vault


class SecretStore:
    """Key Vault secrets with a TTL cache and single-flight reads."""

    def __init__(self, settings: GatewaySettings, *, environ: Mapping[str, str] | None = None) -> None:
        self.default_vault = settings.key_vault_url or env("MCP_GATEWAY_KEY_VAULT_URL", environ)
        self.ttl = settings.key_cache_seconds
        self.http = AzureHttp(settings.ca_bundle)
        self.identity = ManagedIdentity(self.http, default_client_id=env("AZURE_CLIENT_ID", environ))
        self.retry: RetryPolicy = DEFAULT_POLICY
        self.clock = time.monotonic
        """Injectable for tests; only differences of it are used."""
        self._clients: dict[str, SecretClient] = {}
        self._values: dict[_Key, tuple[str, float]] = {}
        self._reads: dict[_Key, asyncio.Task[str]] = {}

    # -- reading ------------------------------------------------------------------------

    def vault_for(self, ref: SecretRef) -> str:
        vault = (ref.vault_url or self.default_vault or "").rstrip("/")
        if not vault:
            raise CredentialUnavailable(
                f"Key Vault secret {ref.name!r}: no vault (set its 'vault', gateway.keyVaultUrl or MCP_GATEWAY_KEY_VAULT_URL)",
                status=502,
            )
        if urlsplit(vault).scheme != "https":
            raise CredentialUnavailable(f"Key Vault secret {ref.name!r}: the vault URL must be https", status=502)
        return vault

    async def get(self, ref: SecretRef) -> str:
        """The secret's value (cached for `keyCacheSeconds`); CredentialUnavailable if it cannot be read."""
        vault = self.vault_for(ref)
        key: _Key = (vault, ref.name.lower(), ref.version or "")
        cached = self._values.get(key)
        if cached is not None and self.clock() - cached[1] < self.ttl:
            return cached[0]
        read = self._reads.get(key)
        if read is None:
            read = asyncio.ensure_future(self._read(key, ref))
            self._reads[key] = read
            read.add_done_callback(lambda _: self._reads.pop(key, None))
        # shield: a caller that goes away must not cancel the read the others wait for
        return await asyncio.shield(read)

    async def _read(self, key: _Key, ref: SecretRef) -> str:
        vault = key[0]
        what = f"Key Vault secret {ref.name!r}" + (f" version {ref.version!r}" if ref.version else "")
        try:
            value = await with_retries(what, lambda: self._read_once(vault, ref), self.retry)
        except _NotFound:
            raise SecretMissing(ref, vault) from None
        self._values[key] = (value, self.clock())
        return value

    async def _read_once(self, vault: str, ref: SecretRef) -> str:
        try:
            secret = await self._client(vault).get_secret(ref.name, ref.version or "")
        except ResourceNotFoundError:
            raise _NotFound from None
        except Exception as error:  # noqa: BLE001 - classified, never swallowed
            raise classify(error, "Key Vault") from None
        if secret.value is None:
            raise Permanent("has no value")
        return secret.value

    def _client(self, vault: str) -> SecretClient:
        client = self._clients.get(vault)
        if client is None:
            client = self._clients[vault] = SecretClient(
                vault,
                self.identity.for_sdk("token for Key Vault"),
                transport=self.http.transport(),
                verify_challenge_resource=not _is_loopback(urlsplit(vault).hostname),
                **SDK_OPTIONS,
            )
        return client

    # -- start-up -----------------------------------------------------------------------

    async def check(self, refs: Iterable[SecretRef]) -> None:
        """Read each secret once: a missing one is a ConfigError naming it; others fail as in `get`."""
        unique = {(r.vault_url, r.name.lower(), r.version): r for r in refs}
        results = await asyncio.gather(*(self.get(r) for r in unique.values()), return_exceptions=True)
        for result in results:
            if isinstance(result, SecretMissing):
                raise ConfigError(f"Key Vault secret {result.ref.name!r}", f"not found in {result.vault}")
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def aclose(self) -> None:
        for read in self._reads.values():
            read.cancel()
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        await self.identity.aclose()
        await self.http.aclose()


__all__ = ["SecretMissing", "SecretStore"]
