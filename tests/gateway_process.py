"""The gateway as users run it, each a real process stopped by its pid:
`python -m shared serve`, and function_app.py under the Functions worker library."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from npm_tools import ServerHandle, _spawn, _wait_log_line

ROOT = Path(__file__).resolve().parents[1]
READY_PREFIX = "MCP gateway listening on "
FUNCTIONS_READY_PREFIX = "functions host listening on "


def _config_file(document: dict[str, Any]) -> Path:
    config = Path(tempfile.mkdtemp(prefix="gateway-config-")) / "gateway.json"
    config.write_text(json.dumps(document))
    return config


def _start(cmd: list[str], env: dict[str, str], prefix: str, timeout: float) -> ServerHandle:
    proc, log_path, tmpdir = _spawn(cmd, {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **env})
    handle = ServerHandle(proc, 0, "", log_path, tmpdir)
    try:
        handle.url = _wait_log_line(proc, log_path, prefix, timeout)
        handle.port = int(handle.url.rsplit(":", 1)[1])
        return handle
    except Exception:
        handle.stop()
        raise


def start_gateway_process(
    document: dict[str, Any], *, env: dict[str, str] | None = None, timeout: float = 30.0
) -> ServerHandle:
    config = _config_file(document)
    cmd = [sys.executable, "-m", "shared", "serve", "--config", str(config), "--port", "0", "--host", "127.0.0.1"]
    return _start(cmd, env or {}, READY_PREFIX, timeout)


def start_functions_host(
    document: dict[str, Any] | str, *, env: dict[str, str] | None = None, timeout: float = 60.0
) -> ServerHandle:
    """function_app.py indexed and invoked by the real worker library (tests/functions_host.py).

    `document` is the config, or the raw MCP_GATEWAY_CONFIG value (to test bad ones).
    """
    setting = document if isinstance(document, str) else str(_config_file(document))
    settings = {"MCP_GATEWAY_CONFIG": setting, "PYTHON_ENABLE_INIT_INDEXING": "1", **(env or {})}
    cmd = [sys.executable, str(ROOT / "tests" / "functions_host.py"), "--app-dir", str(ROOT)]
    return _start(cmd, settings, FUNCTIONS_READY_PREFIX, timeout)
