"""The shared store's one interface, held by both versions: in memory, and Azure Table Storage
(the real azure-data-tables SDK against Azurite over HTTPS, signed in with a managed identity)."""

from __future__ import annotations

import asyncio

import pytest

from azurite import start_azurite_table
from shared.config.model import TableStoreConfig
from shared.identity import AzureHttp, ManagedIdentity
from shared.store import StoreUnavailable
from shared.store.memory import MemoryStore
from shared.store.table import TableStore


@pytest.fixture(scope="module")
def azurite(emulator_pki):
    handle = start_azurite_table(emulator_pki)
    yield handle
    handle.stop()


@pytest.fixture(params=["memory", "table"])
async def store(request):
    if request.param == "memory":
        yield MemoryStore()
        return
    azurite = request.getfixturevalue("azurite")
    request.getfixturevalue("managed_identity_env")
    identity = ManagedIdentity(AzureHttp(request.getfixturevalue("emulator_pki").ca_path))
    table = TableStore(TableStoreConfig(endpoint=azurite.url, table="signintest"), identity)
    yield table
    await table.aclose()
    await identity.aclose()
    await identity.http.aclose()


@pytest.fixture(scope="module")
def emulator_pki(tmp_path_factory):
    from emulators.tls import TestPKI

    pki = TestPKI(tmp_path_factory.mktemp("store-pki"))
    yield pki
    pki.close()


async def test_insert_if_absent_creates_once(store, request):
    key = f"k-{request.node.name[-20:].replace('[', '-').replace(']', '')}-1"
    assert await store.insert_if_absent(key, b"first", 60)
    assert not await store.insert_if_absent(key, b"second", 60)
    entry = await store.get(key)
    assert entry is not None and entry.value == b"first"


async def test_replace_needs_the_etag_of_the_last_read(store):
    key = f"replace-{id(store)}"
    await store.insert_if_absent(key, b"v1", 60)
    first = await store.get(key)
    assert await store.replace(key, b"v2", first.etag, 60)
    assert not await store.replace(key, b"v3", first.etag, 60)  # stale
    second = await store.get(key)
    assert second.value == b"v2" and second.etag != first.etag
    assert not await store.replace("missing-key", b"x", second.etag, 60)


async def test_of_concurrent_writers_with_one_etag_exactly_one_wins(store):
    key = f"race-{id(store)}"
    await store.insert_if_absent(key, b"fresh", 60)
    entry = await store.get(key)
    results = await asyncio.gather(*(store.replace(key, f"taken by {n}".encode(), entry.etag, 60) for n in range(6)))
    assert sorted(results) == [False] * 5 + [True]
    assert (await store.get(key)).value.startswith(b"taken by ")


async def test_expired_entries_read_as_absent_and_can_be_created_again(store):
    key = f"expiry-{id(store)}"
    now = [store.clock()]
    store.clock = lambda: now[0]
    assert await store.insert_if_absent(key, b"short", 30)
    now[0] += 31
    assert await store.get(key) is None
    assert await store.insert_if_absent(key, b"again", 30)
    assert (await store.get(key)).value == b"again"


async def test_delete_with_and_without_etag(store):
    key = f"delete-{id(store)}"
    await store.insert_if_absent(key, b"x", 60)
    entry = await store.get(key)
    assert await store.replace(key, b"y", entry.etag, 60)
    assert not await store.delete(key, entry.etag)  # stale etag
    assert await store.delete(key)
    assert await store.get(key) is None


async def test_keys_are_the_callers_own_names_never_raw_input(store):
    with pytest.raises(ValueError):
        await store.insert_if_absent("a/b", b"x", 60)
    with pytest.raises(ValueError):
        await store.insert_if_absent("x" * 300, b"x", 60)


async def test_an_unreachable_table_is_store_unavailable(managed_identity_env, emulator_pki):
    from npm_tools import free_port

    identity = ManagedIdentity(AzureHttp(emulator_pki.ca_path))
    store = TableStore(TableStoreConfig(endpoint=f"https://127.0.0.1:{free_port()}/devstoreaccount1"), identity)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await store.get("any")
        assert "devstoreaccount1" not in str(caught.value)
    finally:
        await store.aclose()
        await identity.aclose()
        await identity.http.aclose()
