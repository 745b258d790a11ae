"""The official conformance suite against an `openapi` server: the gateway's own MCP server.

The REST API (tests/backends/rest_api.py, `build_conformance_api`) answers each tool
scenario as a plain operation; `python -m shared serve` turns its OpenAPI document
into tools. The suite runs once (`--suite all`); the scenarios a REST API can answer
must pass, and those it cannot (resources, prompts, logging, sampling, ...) are
pinned below with the reason, so that a change either way is noticed.
"""

from __future__ import annotations

import json

import pytest

import npm_tools
from backends.rest_api import build_conformance_api
from gateway_process import start_gateway_process
from test_conformance_direct import ALL_SERVER_SCENARIOS

TOOL_SCENARIOS = [
    "server-initialize",
    "ping",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-error",
    "json-schema-2020-12",
    "dns-rebinding-protection",
]

NOT_FOR_A_REST_API = {
    # one HTTP response is one piece of content
    "tools-call-mixed-content": "a REST operation answers with one media type",
    # an HTTP API cannot send notifications or ask the client anything mid-call
    "tools-call-with-logging": "no log notifications from a REST call",
    "tools-call-with-progress": "no progress from a REST call",
    "tools-call-sampling": "no sampling from a REST call",
    "tools-call-elicitation": "no elicitation from a REST call",
    "elicitation-sep1034-defaults": "no elicitation from a REST call",
    "elicitation-sep1330-enums": "no elicitation from a REST call",
    # the server offers tools only
    "logging-set-level": "tools only",
    "completion-complete": "tools only",
    "resources-list": "tools only",
    "resources-read-text": "tools only",
    "resources-read-binary": "tools only",
    "resources-templates-read": "tools only",
    "resources-subscribe": "tools only",
    "resources-unsubscribe": "tools only",
    "prompts-list": "tools only",
    "prompts-get-simple": "tools only",
    "prompts-get-with-args": "tools only",
    "prompts-get-embedded-resource": "tools only",
    "prompts-get-with-image": "tools only",
}

ALSO_PASSING = [
    # with warnings only: a stateless server hands out no session for these to use
    "server-sse-polling",
    "server-sse-multiple-streams",
]


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    from emulators.server import BackgroundServer

    api = BackgroundServer(build_conformance_api()).start()
    try:
        document = tmp_path_factory.mktemp("conformance") / "openapi.json"
        document.write_text(json.dumps(build_conformance_api().openapi()))
        config = {"servers": {"conformance": {"anonymous": True, "openapi": {"document": str(document), "baseUrl": api.base_url}}}}
        gateway = start_gateway_process(config)
        try:
            yield npm_tools.run_conformance(f"{gateway.base_url}/mcp/conformance", suite="all", timeout=300), gateway
        finally:
            gateway.stop()
    finally:
        api.stop()


def test_every_scenario_ran_and_the_pinned_ones_alone_fail(suite_run):
    run, gateway = suite_run
    assert sorted(run.scenarios) == sorted(ALL_SERVER_SCENARIOS), run.stdout[-4000:]
    assert set(TOOL_SCENARIOS) | set(NOT_FOR_A_REST_API) | set(ALSO_PASSING) == set(ALL_SERVER_SCENARIOS)
    assert sorted(run.failed) == sorted(NOT_FOR_A_REST_API), run.report() + "\n" + gateway.log()[-4000:]


@pytest.mark.parametrize("scenario", TOOL_SCENARIOS)
def test_tool_scenario_passes(suite_run, scenario):
    run, _ = suite_run
    assert run.scenarios[scenario].passed, run.scenarios[scenario].describe()


def test_the_gateway_logged_no_errors(suite_run):
    _, gateway = suite_run
    log = gateway.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-4000:]
