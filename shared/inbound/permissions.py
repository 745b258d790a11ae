"""What a validated token may do here: its required roles and scopes.

Apart from tokens.py, which needs pyjwt and cryptography: the gateway imports that
only for a config with a server that takes tokens.
"""

from __future__ import annotations

from typing import Callable

from ..caller import Caller
from ..config.inbound import TokenRules
from ..errors import Forbidden


def holds_scope(held: frozenset[str], required: str, audiences: tuple[str, ...]) -> bool:
    """Entra writes a scope into `scp` by its short name (`mcp.access`), while clients ask
    for it, and metadata advertises it, in full (`api://mcp-gateway/mcp.access`). The token's
    audience has been checked against this server's, so a short name in it is one of this
    API's scopes when the full name's prefix is one of those audiences."""
    if required in held:
        return True
    resource, slash, name = required.rpartition("/")
    return bool(slash) and resource in audiences and name in held


def check_permissions(caller: Caller, rules: TokenRules, challenge: Callable[[str, str], dict[str, str]]) -> None:
    """Valid token, but is it allowed here? 403 insufficient_scope when not. The rule (docs/inbound.md):

    - requiredRoles: every token must hold at least one of them;
    - requiredScopes: a delegated token (it has `scp`) must hold all of them; an app-only
      token (no `scp`) cannot hold scopes, so it passes this rule only by holding a required role.
    """
    has_role = bool(rules.required_roles) and bool(caller.roles & set(rules.required_roles))
    if rules.required_roles and not has_role:
        raise Forbidden(
            "token lacks a required role",
            headers=challenge("insufficient_scope", "token lacks a required role"),
        )
    if not rules.required_scopes:
        return
    if "scp" in caller.claims:
        missing = [s for s in rules.required_scopes if not holds_scope(caller.scopes, s, rules.audiences)]
        if missing:
            raise Forbidden(
                "token lacks the required scope(s): " + " ".join(missing),
                headers=challenge("insufficient_scope", "token lacks the required scope"),
            )
    elif not has_role:
        raise Forbidden(
            "an app-only token needs a required role here (it cannot hold the required scopes)",
            headers=challenge("insufficient_scope", "token lacks the required scope"),
        )
