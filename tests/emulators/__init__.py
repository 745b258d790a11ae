"""Local, honest emulators of the Azure endpoints the gateway talks to.

Everything binds to 127.0.0.1 on an ephemeral port and is driven by the real
Azure SDKs in ``tests/test_emulators.py``.  Import path assumption: the
``tests`` directory is on ``sys.path`` (pytest ``pythonpath = tests`` or a
rootdir conftest), so modules are imported as ``emulators.<name>``.
"""

from emulators.entra import EntraEmulator, RegisteredApp
from emulators.faults import FaultInjector, RequestLog
from emulators.keyvault import KeyVaultEmulator
from emulators.managed_identity import ManagedIdentity, ManagedIdentityEmulator
from emulators.server import BackgroundServer
from emulators.tls import TestPKI

__all__ = [
    "BackgroundServer",
    "EntraEmulator",
    "FaultInjector",
    "KeyVaultEmulator",
    "ManagedIdentity",
    "ManagedIdentityEmulator",
    "RegisteredApp",
    "RequestLog",
    "TestPKI",
]
