"""The benchmark keeps working: bench/run.py --quick end to end (a ~10 s smoke).

No timing is asserted here (timings belong in the benchmark): the smoke only proves that every process
starts (the Entra and managed identity emulators included), every target (direct,
nginx, each gateway variant: anonymous and full-auth) answers every backend with a
real JSON-RPC result, the full-auth variant refuses a request without its key or
token (401), and the report is produced, with the JWT validation cost.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL_HINT = "apt-get update && apt-get install -y wrk nginx-light"


def _missing_tools() -> list[str]:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [tool for tool in ("wrk", "nginx") if shutil.which(tool, path=search) is None]


def test_quick_bench_checks_every_target_and_prints_the_table(tmp_path: Path) -> None:
    missing = _missing_tools()
    if missing:
        pytest.fail(f"the bench smoke needs {', '.join(missing)} (Debian packages): {INSTALL_HINT}")

    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, f"bench/run.py --quick failed:\n{done.stderr[-4000:]}"
    assert "verified: every target answers every backend" in done.stderr
    assert "verified: gateway variants with credentials answer 401 without them" in done.stderr
    for heading in ("### Load:", "### SSE: time to the first event", "### Idle GET SSE streams", "### Inbound JWT validation"):
        assert heading in done.stdout
    gateways = {"gateway:anonymous", "gateway:full-auth"}
    for target in ("direct", "nginx", *gateways):
        assert f"| raw | {target} |" in done.stdout
    [results] = tmp_path.glob("*-quick.json")
    document = json.loads(results.read_text())
    assert {run["target"] for run in document["load_runs"]} == {"direct", "nginx", *gateways}
    assert all(run["requests"] > 0 for run in document["load_runs"])
    assert set(document["idle_streams"]) == {"nginx", *gateways}
    jwt = document["jwt_validation"]
    assert jwt["cold"]["calls"] > 0 and jwt["cached"]["calls"] > 0
    # the gateway called the emulated tenant and identity endpoint while warming up
    assert document["emulator_requests"]["after_verify"]["mi_token_requests"] >= 1


@pytest.mark.parametrize("option", ["--sse-samples", "--idle-streams"])
def test_counts_the_report_divides_by_are_refused_at_zero_before_anything_starts(option: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), option, "0"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert f"argument {option}: must be at least 1, got 0" in result.stderr
