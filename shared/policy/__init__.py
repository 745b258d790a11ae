"""MCP-aware policy: the pipeline stage between inbound auth and the backend.

Loaded only for a config in which some server has `policy`; a server without one
never reaches this package. For a server with one, the request body (already
bounded by the gateway's body limits) is read whole, its JSON-RPC messages checked
against the server's rules, and then sent on as it came; list answers coming back
are filtered (lists.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from ..body import RequestBody
from ..caller import Caller
from ..config import GatewayConfig, ServerConfig
from ..errors import CallDenied, Forbidden
from ..inbound.metadata import metadata_url, public_base_url, quoted_string
from .lists import EventStreamFilter, filtered_json_response
from .messages import Call, Messages, read_messages
from .rules import ServerRules, well_formed

__all__ = ["Admitted", "EventStreamFilter", "PolicyGate", "ServerRules", "filtered_json_response"]


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request the rules let through: the body to send on, and whether its answer is filtered."""

    payload: bytes | None
    rules: ServerRules
    filter_answer: bool


class PolicyGate:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.rules = {
            name: ServerRules(server.policy, _audiences(server))
            for name, server in config.servers.items()
            if server.policy is not None
        }

    async def admit(self, server: ServerConfig, request: Request, body: RequestBody | None, caller: Caller) -> Admitted:
        """Raises CallDenied (a JSON-RPC error) or Forbidden (insufficient_scope) for a call the rules refuse."""
        rules = self.rules[server.name]
        if body is None:
            # A GET stream may carry answers too (replayed after a reconnect): filter it.
            return Admitted(None, rules, filter_answer=request.method == "GET")
        payload = b"".join([chunk async for chunk in body])
        messages = read_messages(payload)
        for call in messages.calls:
            self._check(server, request, rules, call, messages, caller)
        return Admitted(payload, rules, filter_answer=messages.lists)

    def _check(
        self, server: ServerConfig, request: Request, rules: ServerRules, call: Call, messages: Messages, caller: Caller
    ) -> None:
        verdict = rules.decide(call.method, call.name, caller)
        if verdict.allowed:
            return
        if verdict.step_up_scopes and server.auth is not None and server.auth.token_rules is not None:
            scope = " ".join(verdict.step_up_scopes)
            challenge = (
                f"Bearer error=\"insufficient_scope\", scope={quoted_string(scope)}, "
                f"resource_metadata={quoted_string(metadata_url(public_base_url(request, self.config.gateway), server))}"
            )
            raise Forbidden(f"this call needs the scope {scope}", headers={"www-authenticate": challenge})
        if messages.batch or call.id is None:
            raise Forbidden("a call in this request is not allowed")
        # The answer a backend gives for a name it does not have: a denial reveals nothing.
        raise CallDenied(_unknown(call))


def _unknown(call: Call) -> str:
    what = {"tools/call": "tool", "prompts/get": "prompt", "resources/read": "resource"}[call.method]
    return f"unknown {what}" + (f": {call.name}" if well_formed("tools/call", call.name) else "")


def _audiences(server: ServerConfig) -> tuple[str, ...]:
    rules = server.auth.token_rules if server.auth is not None else None
    return rules.audiences if rules is not None else ()
