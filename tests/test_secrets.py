"""SecretStore against the Key Vault and managed identity emulators, through the real SDKs."""

from __future__ import annotations

import asyncio

import pytest

from emulators.fixtures import *  # noqa: F403 - fixtures
from emulators.managed_identity import ManagedIdentity
from shared.config import GatewaySettings, SecretRef
from shared.errors import ConfigError, CredentialUnavailable
from shared.retry import RetryPolicy
from shared.secrets import SecretMissing, SecretStore

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.5)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store_for(key_vault, managed_identity_env, emulator_pki):
    stores: list[SecretStore] = []

    def make(environ: dict[str, str] | None = None, **settings) -> SecretStore:
        options = {"ca_bundle": emulator_pki.ca_path, "key_vault_url": key_vault.vault_url, **settings}
        store = SecretStore(GatewaySettings(**options), environ=environ or {})
        store.retry = FAST
        stores.append(store)
        return store

    yield make
    # each test closes its stores; this only guards against a forgotten one
    assert all(not s._clients for s in stores), "a SecretStore was left open"


async def test_a_secret_is_read_once_per_ttl_and_a_rotation_arrives_after_it(store_for, key_vault, managed_identity_env):
    first = key_vault.set_secret("backend-key", "value-one")
    store = store_for(key_cache_seconds=60)
    clock = store.clock = FakeClock()
    try:
        ref = SecretRef("backend-key")
        assert await store.get(ref) == "value-one"
        key_vault.set_secret("backend-key", "value-two")
        clock.now += 59
        assert await store.get(ref) == "value-one"  # inside the TTL: no read
        assert key_vault.get_count("backend-key") == 1
        clock.now += 2
        assert await store.get(ref) == "value-two"  # after it: read again, no restart
        assert key_vault.get_count("backend-key") == 2
        pinned = SecretRef("backend-key", version=first.version)
        assert await store.get(pinned) == "value-one"
    finally:
        await store.aclose()
    assert managed_identity_env.token_request_count(resource="https://vault.azure.net") == 1


async def test_concurrent_readers_share_one_read(store_for, key_vault):
    key_vault.set_secret("shared", "s3cr3t-shared")
    store = store_for()
    try:
        values = await asyncio.gather(*(store.get(SecretRef("shared")) for _ in range(200)))
    finally:
        await store.aclose()
    assert set(values) == {"s3cr3t-shared"}
    assert key_vault.get_count("shared") == 1


async def test_vault_from_the_setting_and_a_user_assigned_identity(store_for, key_vault, managed_identity_env):
    key_vault.set_secret("k", "v")
    identity = managed_identity_env.add_user_assigned(ManagedIdentity())
    store = store_for(
        {"MCP_GATEWAY_KEY_VAULT_URL": key_vault.vault_url, "AZURE_CLIENT_ID": identity.client_id}, key_vault_url=None
    )
    try:
        assert await store.get(SecretRef("k")) == "v"
    finally:
        await store.aclose()
    assert managed_identity_env.token_request_count(identity=identity.client_id) == 1
    assert managed_identity_env.token_request_count(identity=managed_identity_env.system_identity.client_id) == 0


async def test_a_missing_secret_is_named_and_fails_the_start_up_check(store_for, key_vault):
    key_vault.set_secret("present", "v")
    store = store_for()
    try:
        with pytest.raises(SecretMissing) as missing:
            await store.get(SecretRef("absent"))
        assert missing.value.status == 502 and "'absent'" in missing.value.message
        with pytest.raises(ConfigError, match="Key Vault secret 'absent': not found in https://127.0.0.1"):
            await store.check([SecretRef("present"), SecretRef("absent")])
        await store.check([SecretRef("present")])
    finally:
        await store.aclose()
    assert key_vault.get_count("absent") == 2  # a 404 is final: never retried


@pytest.mark.parametrize("status", [500, 429])
async def test_key_vault_failing_is_retried_within_bounds(store_for, key_vault, status):
    key_vault.set_secret("flaky", "v")
    store = store_for()
    try:
        key_vault.faults.fail_next(2, status=status, retry_after=0 if status == 429 else None, path_prefix="/secrets/flaky")
        assert await store.get(SecretRef("flaky")) == "v"  # third attempt
        key_vault.faults.fail_next(10, status=status, path_prefix="/secrets/other")
        key_vault.set_secret("other", "never-seen-value")
        with pytest.raises(CredentialUnavailable) as failed:
            await store.get(SecretRef("other"))
    finally:
        await store.aclose()
    assert failed.value.status == 503
    assert failed.value.message == f"Key Vault secret 'other': Key Vault answered {status} (gave up after 3 attempts)"
    assert key_vault.requests.count(path="/secrets/other/") == 3
    key_vault.faults.clear()


async def test_a_long_retry_after_ends_the_retries_with_it(store_for, key_vault):
    key_vault.set_secret("throttled", "v")
    store = store_for()
    try:
        key_vault.faults.fail_next(5, status=429, retry_after=30, path_prefix="/secrets/throttled")
        with pytest.raises(CredentialUnavailable) as failed:
            await store.get(SecretRef("throttled"))
    finally:
        await store.aclose()
    key_vault.faults.clear()
    assert failed.value.status == 503 and failed.value.headers == {"Retry-After": "30"}
    assert key_vault.requests.count(path="/secrets/throttled/") == 1


async def test_key_vault_or_identity_down_is_a_503_naming_the_step(store_for, key_vault, managed_identity_env):
    key_vault.set_secret("s", "v")
    store = store_for()
    try:
        managed_identity_env.stop()
        try:
            with pytest.raises(CredentialUnavailable) as no_identity:
                await store.get(SecretRef("s"))
        finally:
            managed_identity_env.start()
        key_vault.stop()
        try:
            with pytest.raises(CredentialUnavailable) as no_vault:
                await store.get(SecretRef("s"))
        finally:
            key_vault.start()
        assert await store.get(SecretRef("s")) == "v"  # both back: no restart needed
    finally:
        await store.aclose()
    assert no_identity.value.status == 503
    assert no_identity.value.message.startswith("Key Vault secret 's': managed identity endpoint (token for Key Vault)")
    assert no_vault.value.status == 503
    assert no_vault.value.message.startswith("Key Vault secret 's': Key Vault unreachable")


async def test_any_https_vault_is_accepted_and_others_are_refused(key_vault, managed_identity_env, emulator_pki):
    store = SecretStore(GatewaySettings(), environ={})
    try:
        for sovereign in ("https://kv.vault.usgovcloudapi.net", "https://kv.vault.azure.cn/"):
            assert store.vault_for(SecretRef("x", vault_url=sovereign)) == sovereign.rstrip("/")
        with pytest.raises(CredentialUnavailable, match="'x': no vault"):
            store.vault_for(SecretRef("x"))
        with pytest.raises(CredentialUnavailable, match="must be https"):
            store.vault_for(SecretRef("x", vault_url="http://kv.example"))
    finally:
        await store.aclose()
