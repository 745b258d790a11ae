"""A server's rules, evaluated: may this caller use this tool, resource or prompt?

A deny rule that matches wins; else an allow rule that matches allows; else the
server's default decides. Names are matched exactly as sent (case-sensitive
globs); a name that is not plain visible ASCII within the length limit matches
nothing and is denied, so look-alike characters, invisible characters and
oversized names can never slip past a deny rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from ..caller import Caller
from ..config.policy import CallerMatch, GovernedMethod, PolicyConfig, PolicyRule
from ..inbound.permissions import holds_scope

_NAME = re.compile(r"[\x21-\x7e]{1,128}")
_URI = re.compile(r"[\x21-\x7e]{1,2048}")


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    step_up_scopes: tuple[str, ...] = ()
    """Scopes that would allow the call (a scopes-only allow rule matched everything else)."""


ALLOWED = Verdict(True)
DENIED = Verdict(False)


def well_formed(method: GovernedMethod, name: Any) -> bool:
    """Tool and prompt names, resource URIs: visible ASCII, bounded (anything else is denied)."""
    if type(name) is not str:
        return False
    return (_URI if method == "resources/read" else _NAME).fullmatch(name) is not None


class ServerRules:
    """One server's policy, with the audiences its tokens carry (to read short scope names)."""

    def __init__(self, policy: PolicyConfig, audiences: tuple[str, ...] = ()) -> None:
        self.default_allows = policy.default == "allow"
        self.rules = policy.rules
        self.audiences = audiences

    def decide(self, method: GovernedMethod, name: Any, caller: Caller) -> Verdict:
        if not well_formed(method, name):
            return DENIED
        allowed = self.default_allows
        step_up: tuple[str, ...] = ()
        for rule in self.rules:
            if method not in rule.methods or not _names_match(rule, name):
                continue
            if self._caller_matches(rule.callers, caller):
                if rule.effect == "deny":
                    return DENIED
                allowed = True
            elif rule.effect == "allow" and rule.callers.scopes_only and not step_up:
                step_up = tuple(sorted(rule.callers.scopes))
        return ALLOWED if allowed else Verdict(False, step_up)

    def allows(self, method: GovernedMethod, name: Any, caller: Caller) -> bool:
        return self.decide(method, name, caller).allowed

    def _caller_matches(self, match: CallerMatch, caller: Caller) -> bool:
        if match.subscriptions and caller.subscription not in match.subscriptions:
            return False
        if match.subjects and caller.subject not in match.subjects:
            return False
        if match.app_ids and caller.app_id not in match.app_ids:
            return False
        if match.roles and match.roles.isdisjoint(caller.roles):
            return False
        if match.groups and match.groups.isdisjoint(_groups(caller)):
            return False
        if match.scopes and not any(holds_scope(caller.scopes, scope, self.audiences) for scope in match.scopes):
            return False
        return True

def _names_match(rule: PolicyRule, name: str) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in rule.names)


def _groups(caller: Caller) -> frozenset[str]:
    groups = caller.claims.get("groups")
    if not isinstance(groups, list):
        return frozenset()
    return frozenset(g for g in groups if isinstance(g, str))
