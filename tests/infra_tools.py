"""The infra venv's tools (checkov, pycep, PyYAML) for the offline deployment checks.

They live in their own venv (requirements-infra.txt: checkov pins versions that clash with
the gateway's) at $INFRA_VENV, else ./.venv-infra; ./scripts/test installs it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def infra_bin(tool: str) -> Path:
    venv = Path(os.environ.get("INFRA_VENV") or ROOT / ".venv-infra")
    path = venv / "bin" / tool
    if not path.exists():
        message = (
            f"{path} is missing: python3.11 -m venv {venv} && "
            f"{venv}/bin/pip install -r requirements-infra.txt"
        )
        pytest.fail(message + "  (./scripts/test installs it)")
    return path


def load_yaml(path: Path) -> Any:
    """Parse a YAML file with PyYAML (a checkov dependency) from the infra venv."""
    script = "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1], encoding='utf-8')), sys.stdout)"
    proc = subprocess.run(
        [str(infra_bin("python")), "-c", script, str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
