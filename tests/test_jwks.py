"""The JWKS cache against the Entra emulator over HTTPS, on a clock the test moves."""

from __future__ import annotations

import uuid

import pytest

from shared.httpclient import https_client
from shared.inbound.jwks import JwksCache, JwksUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def cache(entra, emulator_pki):
    client = https_client(emulator_pki.ca_path)
    clock = Clock()
    yield JwksCache(f"{entra.issuer_v2}/.well-known/openid-configuration", lambda: client, clock=clock), clock
    await client.aclose()


async def test_a_rotated_key_is_picked_up_at_the_hourly_refresh(cache, entra):
    jwks, clock = cache
    old = entra.signing_key.kid
    assert (await jwks.key(old)) is not None
    assert jwks.issuer == entra.issuer_v2
    new = entra.rotate_keys(keep_old=False).kid
    clock.now += 60
    assert await jwks.key(new) is None  # within the unknown-kid cooldown: no refetch yet
    clock.now += 3600
    assert (await jwks.key(new)) is not None
    assert await jwks.key(old) is None


async def test_unknown_kids_refetch_at_most_once_per_cooldown(cache, entra):
    jwks, clock = cache
    await jwks.key(entra.signing_key.kid)
    fetches = entra.jwks_fetches
    for _ in range(20):
        assert await jwks.key(uuid.uuid4().hex) is None
    assert entra.jwks_fetches == fetches
    clock.now += 301
    for _ in range(20):
        assert await jwks.key(uuid.uuid4().hex) is None
    assert entra.jwks_fetches == fetches + 1


async def test_cached_keys_serve_while_the_jwks_endpoint_fails(cache, entra):
    jwks, clock = cache
    kid = entra.signing_key.kid
    assert await jwks.key(kid) is not None
    entra.fail_jwks(500)
    try:
        clock.now += 7200  # refresh due, and failing
        assert (await jwks.key(kid)) is not None
        entra.add_key("brand-new", activate=True)
        assert await jwks.key("brand-new") is None
        entra.fail_jwks(None)
        clock.now += 301
        assert (await jwks.key("brand-new")) is not None
    finally:
        entra.fail_jwks(None)


async def test_no_keys_at_all_is_an_explicit_error(emulator_pki):
    client = https_client(emulator_pki.ca_path)
    try:
        jwks = JwksCache("https://127.0.0.1:9/tenant/v2.0/.well-known/openid-configuration", lambda: client)
        with pytest.raises(JwksUnavailable):
            await jwks.key("any")
    finally:
        await client.aclose()


async def test_only_signing_keys_with_matching_algorithms_are_kept(cache, entra):
    jwks, _ = cache
    key = await jwks.key(entra.signing_key.kid)
    assert key.algorithms <= {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
