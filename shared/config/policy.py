"""A server's `policy` config: which caller may use which tools, resources and prompts.

    "policy": {"default": "deny",
               "rules": [{"effect": "allow", "methods": ["tools/call"], "names": ["add", "get_*"],
                          "callers": {"roles": ["Tools.Read"]}}]}

Only the typed section lives here; evaluating it is shared/policy's work, loaded
only for a config that has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from ..errors import ConfigError

GovernedMethod = Literal["tools/call", "resources/read", "prompts/get"]
GOVERNED_METHODS: tuple[GovernedMethod, ...] = ("tools/call", "resources/read", "prompts/get")

_CALLER_FIELDS = {
    "subscriptions": "subscriptions",
    "subjects": "subjects",
    "roles": "roles",
    "scopes": "scopes",
    "appIds": "app_ids",
    "groups": "groups",
}


@dataclass(frozen=True)
class CallerMatch:
    """Who a rule is about: every field given must match (any of its values); none given = everyone."""

    subscriptions: frozenset[str] = frozenset()
    subjects: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    app_ids: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    @property
    def scopes_only(self) -> bool:
        """The rule is about scopes alone: a caller can step up to it by asking for one."""
        return bool(self.scopes) and not (self.subscriptions or self.subjects or self.roles or self.app_ids or self.groups)


@dataclass(frozen=True)
class PolicyRule:
    effect: Literal["allow", "deny"]
    methods: frozenset[GovernedMethod] = frozenset(GOVERNED_METHODS)
    names: tuple[str, ...] = ("*",)
    """Globs (`*`, `?`, `[...]`), case-sensitive, over tool names, prompt names or resource URIs."""
    callers: CallerMatch = CallerMatch()


@dataclass(frozen=True)
class PolicyConfig:
    default: Literal["allow", "deny"]
    """What a governed call no rule matches gets."""
    rules: tuple[PolicyRule, ...] = ()


def build_policy(raw: Mapping[str, Any] | None, prefix: str) -> PolicyConfig | None:
    if raw is None:
        return None
    rules = []
    for i, rule in enumerate(raw.get("rules", ())):
        callers = rule.get("callers", {})
        for name, values in callers.items():
            if not values:
                raise ConfigError(f"{prefix}.rules[{i}].callers.{name}", "is empty: it would match no caller")
        rules.append(
            PolicyRule(
                effect=rule["effect"],
                methods=frozenset(rule.get("methods", GOVERNED_METHODS)),
                names=tuple(rule.get("names", ("*",))),
                callers=CallerMatch(**{_CALLER_FIELDS[k]: frozenset(v) for k, v in callers.items()}),
            )
        )
    return PolicyConfig(default=raw["default"], rules=tuple(rules))
