"""Pytest fixtures for the emulators; a conftest imports them with
``from emulators.fixtures import *``  (``tests/`` must be on ``sys.path``).

Every fixture that starts a server stops it at teardown; env changes go
through ``monkeypatch`` so they are undone.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from emulators.entra import EntraEmulator
from emulators.keyvault import KeyVaultEmulator
from emulators.managed_identity import ManagedIdentityEmulator
from emulators.tls import TestPKI

__all__ = [
    "clear_keyvault_challenge_cache",
    "entra",
    "key_vault",
    "managed_identity",
    "managed_identity_env",
    "msal_http_client",
    "emulator_pki",
]

# Env vars that make azure-identity pick another credential or identity source.
_CONFLICTING_ENV = (
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_USERNAME",
    "AZURE_AUTHORITY_HOST",
    "IDENTITY_SERVER_THUMBPRINT",  # would switch to the Service Fabric flow
    "IMDS_ENDPOINT",  # with IDENTITY_ENDPOINT it would mean Azure Arc
    "MSI_ENDPOINT",
    "MSI_SECRET",
)


def clear_keyvault_challenge_cache() -> None:
    """The Key Vault SDK caches bearer challenges process-wide by host:port."""
    from azure.keyvault.secrets._shared import http_challenge_cache

    http_challenge_cache.clear()


@pytest.fixture(scope="session")
def emulator_pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPKI]:
    pki = TestPKI(tmp_path_factory.mktemp("pki"))
    yield pki
    pki.close()


@pytest.fixture
def entra(emulator_pki: TestPKI) -> Iterator[EntraEmulator]:
    with EntraEmulator(emulator_pki) as emulator:
        yield emulator


@pytest.fixture
def managed_identity(entra: EntraEmulator) -> Iterator[ManagedIdentityEmulator]:
    with ManagedIdentityEmulator(entra) as emulator:
        yield emulator


@pytest.fixture
def managed_identity_env(managed_identity: ManagedIdentityEmulator, monkeypatch: pytest.MonkeyPatch) -> ManagedIdentityEmulator:
    """The MI emulator plus the env the Functions host would set (and nothing conflicting)."""
    for name in _CONFLICTING_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in managed_identity.env().items():
        monkeypatch.setenv(name, value)
    return managed_identity


@pytest.fixture
def key_vault(entra: EntraEmulator, emulator_pki: TestPKI) -> Iterator[KeyVaultEmulator]:
    clear_keyvault_challenge_cache()
    with KeyVaultEmulator(entra, emulator_pki) as emulator:
        yield emulator
    clear_keyvault_challenge_cache()


@pytest.fixture
def msal_http_client(emulator_pki: TestPKI) -> Iterator[requests.Session]:
    """A requests session trusting only the test CA.

    ``trust_env=False`` matters: the machine exports REQUESTS_CA_BUNDLE, which
    requests would otherwise prefer over ``verify=``.
    """
    session = requests.Session()
    session.trust_env = False
    session.verify = emulator_pki.ca_path
    yield session
    session.close()
