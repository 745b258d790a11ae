"""The gateway as users run it: `python -m shared serve`, a real process stopped by its pid."""

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


def start_gateway_process(document: dict[str, Any], *, timeout: float = 30.0) -> ServerHandle:
    config_dir = Path(tempfile.mkdtemp(prefix="gateway-config-"))
    config = config_dir / "gateway.json"
    config.write_text(json.dumps(document))
    cmd = [sys.executable, "-m", "shared", "serve", "--config", str(config), "--port", "0", "--host", "127.0.0.1"]
    proc, log_path, tmpdir = _spawn(cmd, {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)})
    handle = ServerHandle(proc, 0, "", log_path, tmpdir)
    try:
        handle.url = _wait_log_line(proc, log_path, READY_PREFIX, timeout)
        handle.port = int(handle.url.rsplit(":", 1)[1])
        return handle
    except Exception:
        handle.stop()
        raise
