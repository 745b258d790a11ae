"""Azurite's Table service (npm), started and stopped by the tests: HTTPS with the test CA, and
OAuth checked ("basic": audience, issuer and lifetime), so the gateway reaches it as it reaches
Azure Table Storage, with a managed identity token. In memory; loopback only; stopped by its pid."""

from __future__ import annotations

import time

from npm_tools import NPM_DIR, ServerHandle, _spawn, free_port

READY = "Azurite Table service successfully started on"
ACCOUNT = "devstoreaccount1"


def start_azurite_table(pki, *, timeout: float = 30.0, attempts: int = 3) -> ServerHandle:
    last_error: Exception | None = None
    for _ in range(attempts):
        port = free_port()
        cmd = [
            "node", str(NPM_DIR / "node_modules" / "azurite" / "dist" / "src" / "table" / "main.js"),
            "--tableHost", "127.0.0.1", "--tablePort", str(port), "--inMemoryPersistence",
            "--oauth", "basic", "--cert", str(pki.server_cert_file), "--key", str(pki.server_key_file),
            "--disableTelemetry", "--skipApiVersionCheck",
        ]
        proc, log_path, tmpdir = _spawn(cmd)
        handle = ServerHandle(proc, port, f"https://127.0.0.1:{port}/{ACCOUNT}", log_path, tmpdir)
        deadline = time.monotonic() + timeout
        try:
            while READY not in handle.log():
                if proc.poll() is not None:
                    raise RuntimeError(f"azurite exited with {proc.returncode}:\n{handle.log()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"azurite not listening after {timeout}s:\n{handle.log()}")
                time.sleep(0.05)  # poll interval, not synchronisation
            return handle
        except Exception as error:  # a port taken in between: try another
            handle.stop()
            last_error = error
    assert last_error is not None
    raise last_error
