"""A throw-away PKI for tests: one trustme CA, one server cert, client certs.

Why: every HTTPS emulator must be trusted by the real SDKs without touching the
system trust store.  The CA PEM is written to a file because SDKs take a path
(``connection_verify=``, ``requests.Session.verify``), and the machine exports
``REQUESTS_CA_BUNDLE`` which silently overrides ``verify=`` unless a session
with ``trust_env=False`` is used.

Keys are RSA throughout: msal's certificate credential only signs RS256/PS256.
"""

from __future__ import annotations

import hashlib
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

SERVER_IDENTITIES: tuple[str, ...] = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class ClientCertificate:
    """An RSA key + certificate pair, as an app registration credential uses."""

    private_key_pem: str
    certificate_pem: str

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.certificate_pem.encode())

    @property
    def private_key(self) -> RSAPrivateKey:
        key = serialization.load_pem_private_key(self.private_key_pem.encode(), password=None)
        assert isinstance(key, RSAPrivateKey)
        return key

    @property
    def public_key(self) -> RSAPublicKey:
        key = self.certificate.public_key()
        assert isinstance(key, RSAPublicKey)
        return key

    @property
    def sha1_thumbprint(self) -> str:
        """Hex SHA-1 of the DER cert: what the portal shows and msal's ``thumbprint`` takes."""
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - protocol-defined

    @property
    def sha256_thumbprint(self) -> str:
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return hashlib.sha256(der).hexdigest().upper()


class TestPKI:
    """A CA, a server certificate for 127.0.0.1/localhost, and files on disk.

    Use one per test session (see ``fixtures.test_pki``) or as a context
    manager; ``close()`` deletes the temporary directory.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, directory: str | Path | None = None) -> None:
        self._owned_dir = directory is None
        self.directory = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="emu-pki-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA(key_type=trustme.KeyType.RSA)
        self.server_cert = self.ca.issue_cert(*SERVER_IDENTITIES, key_type=trustme.KeyType.RSA)
        self.ca_file = self.directory / "ca.pem"
        self.server_cert_file = self.directory / "server-chain.pem"
        self.server_key_file = self.directory / "server-key.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        chain = b"".join(blob.bytes() for blob in self.server_cert.cert_chain_pems)
        self.server_cert_file.write_bytes(chain)
        self.server_cert.private_key_pem.write_to_path(str(self.server_key_file))

    @property
    def ca_path(self) -> str:
        return str(self.ca_file)

    def server_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(ctx)
        return ctx

    def client_ssl_context(self) -> ssl.SSLContext:
        """Trusts only the test CA (not the system store)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_path)
        return ctx

    def issue_client_certificate(self, common_name: str = "emulator-client") -> ClientCertificate:
        """An RSA key + cert usable as an Entra app certificate credential."""
        leaf = self.ca.issue_cert(common_name, key_type=trustme.KeyType.RSA)
        return ClientCertificate(
            private_key_pem=leaf.private_key_pem.bytes().decode(),
            certificate_pem=leaf.cert_chain_pems[0].bytes().decode(),
        )

    def close(self) -> None:
        if self._owned_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "TestPKI":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
