"""The official conformance suite, `--suite all`, through the gateway.

The same fixture server passes it directly (test_conformance_direct.py); here the
suite talks to `python -m shared serve` in front of it, so any difference is the
gateway's. The dns-rebinding scenario is answered by the gateway's own guard.
"""

from __future__ import annotations

import pytest

import npm_tools
from gateway_process import start_gateway_process
from test_conformance_direct import ALL_SERVER_SCENARIOS, EXPECTED_WARNINGS


@pytest.fixture(scope="module")
def gateway_run():
    backend = npm_tools.start_conformance_fixture()
    try:
        gateway = start_gateway_process({"servers": {"conformance": {"url": backend.url, "anonymous": True}}})
        try:
            yield npm_tools.run_conformance(f"{gateway.base_url}/mcp/conformance", suite="all", timeout=300), gateway
        finally:
            gateway.stop()
    finally:
        backend.stop()


def test_every_scenario_ran_and_the_suite_passed(gateway_run):
    run, gateway = gateway_run
    assert sorted(run.scenarios) == sorted(ALL_SERVER_SCENARIOS), run.stdout[-4000:]
    assert run.returncode == 0, run.report() + "\n" + gateway.log()[-4000:]


@pytest.mark.parametrize("scenario", ALL_SERVER_SCENARIOS)
def test_scenario_passes_through_the_gateway(gateway_run, scenario):
    run, _ = gateway_run
    assert run.scenarios[scenario].passed, run.scenarios[scenario].describe()


def test_same_warnings_as_direct(gateway_run):
    run, _ = gateway_run
    assert run.warning_ids() == EXPECTED_WARNINGS, run.report()


def test_dns_rebinding_is_refused_by_the_gateway_itself(gateway_run):
    run, _ = gateway_run
    checks = {c["id"]: c for c in run.scenarios["dns-rebinding-protection"].checks}
    assert checks["localhost-host-rebinding-rejected"]["status"] == "SUCCESS"
    assert checks["localhost-host-rebinding-rejected"]["details"]["statusCode"] == 421
    assert checks["localhost-host-valid-accepted"]["status"] == "SUCCESS"


def test_the_gateway_logged_no_errors(gateway_run):
    _, gateway = gateway_run
    log = gateway.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-4000:]
