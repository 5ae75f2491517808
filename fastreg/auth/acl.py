"""The built-in issuer's access rules: users and groups, repository globs -> actions.

    groups:
      developers: [alice, bob]
    rules:
      - users: [admin]                 # "*" is any authenticated user
        repositories: ["**"]
        actions: ["*"]
        catalog: true                  # may list /v2/_catalog (registry:catalog:*)
      - groups: [developers]
        repositories: ["team/**", "${user}/*"]
        actions: [pull, push]
      - anonymous: true                # clients that send no credentials
        repositories: ["public/**"]
        actions: [pull]

In a glob `*` matches within one path segment, `**` across segments, `?` one character, and
`${user}` is the authenticated user's name. Every rule that matches adds its actions; what is
granted is what was asked for and allowed, and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from fastreg.auth.access import ALL, CATALOG, DELETE, PULL, PUSH, REGISTRY, REPOSITORY, Scope
from fastreg.config.convert import SAFE_LOADER
from fastreg.registry.names import is_valid_name

ACTIONS = (PULL, PUSH, DELETE, ALL)
_RULE_KEYS = frozenset({"users", "groups", "anonymous", "repositories", "actions", "catalog"})


class ACLError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Rule:
    users: frozenset[str]
    groups: frozenset[str]
    anonymous: bool
    repositories: tuple[str, ...]
    actions: frozenset[str]
    catalog: bool

    def applies_to(self, user: str | None, groups: frozenset[str]) -> bool:
        if user is None:
            return self.anonymous
        return "*" in self.users or user in self.users or bool(self.groups & groups)

    def covers(self, repository: str, user: str | None) -> bool:
        return any(glob_regex(g, user).fullmatch(repository) for g in self.repositories)


def glob_regex(glob: str, user: str | None) -> re.Pattern[str]:
    """``team/*`` -> one segment below team; ``**`` any depth; ``${user}`` the caller's name."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("${user}", i):
            if user is None:
                return re.compile(r"(?!)")  # anonymous callers have no name to match
            out.append(re.escape(user))
            i += len("${user}")
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out))


@dataclass(frozen=True, slots=True)
class ACL:
    groups: Mapping[str, frozenset[str]]  # user -> groups
    rules: tuple[Rule, ...]

    def allowed(self, user: str | None, scope: Scope) -> tuple[str, ...]:
        """The requested actions of ``scope`` this caller may have, in the requested order."""
        groups = self.groups.get(user, frozenset()) if user is not None else frozenset()
        allowed: set[str] = set()
        for rule in self.rules:
            if not rule.applies_to(user, groups):
                continue
            if scope.type == REPOSITORY and is_valid_name(scope.name) and rule.covers(scope.name, user):
                allowed |= rule.actions
            elif scope.type == REGISTRY and scope.name == CATALOG and rule.catalog:
                allowed.add(ALL)
        if ALL in allowed:
            return scope.actions
        return tuple(a for a in scope.actions if a in allowed)

    def grant(self, user: str | None, scopes: Iterable[Scope]) -> list[dict[str, Any]]:
        """The ``access`` claim: one entry per scope that got anything, actions merged."""
        merged: dict[tuple[str, str], list[str]] = {}
        for scope in scopes:
            actions = self.allowed(user, scope)
            if actions:
                into = merged.setdefault((scope.type, scope.name), [])
                into.extend(a for a in actions if a not in into)
        return [{"type": t, "name": n, "actions": a} for (t, n), a in merged.items()]


def parse_acl(text: bytes) -> ACL:
    try:
        doc = yaml.load(text, Loader=SAFE_LOADER) or {}
    except yaml.YAMLError as exc:
        raise ACLError(f"invalid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ACLError("expected a mapping with 'groups' and 'rules'")
    unknown = set(doc) - {"groups", "rules"}
    if unknown:
        raise ACLError(f"unknown keys: {', '.join(sorted(map(str, unknown)))}")
    members: dict[str, set[str]] = {}
    groups = doc.get("groups") or {}
    if not isinstance(groups, dict):
        raise ACLError("groups: expected a mapping of group -> [users]")
    for group, users in groups.items():
        for user in _strings(users, f"groups.{group}"):
            members.setdefault(user, set()).add(str(group))
    rules = doc.get("rules") or []
    if not isinstance(rules, list):
        raise ACLError("rules: expected a list")
    return ACL(
        {u: frozenset(g) for u, g in members.items()},
        tuple(_rule(r, f"rules[{i}]") for i, r in enumerate(rules)),
    )


def _rule(doc: Any, path: str) -> Rule:
    if not isinstance(doc, dict):
        raise ACLError(f"{path}: expected a mapping")
    unknown = set(doc) - _RULE_KEYS
    if unknown:
        raise ACLError(f"{path}: unknown keys: {', '.join(sorted(map(str, unknown)))}")
    actions = _strings(doc.get("actions"), f"{path}.actions")
    for action in actions:
        if action not in ACTIONS:
            raise ACLError(f"{path}.actions: {action!r} is not one of {', '.join(ACTIONS)}")
    anonymous, catalog = doc.get("anonymous", False), doc.get("catalog", False)
    if not isinstance(anonymous, bool) or not isinstance(catalog, bool):
        raise ACLError(f"{path}: 'anonymous' and 'catalog' are true or false")
    rule = Rule(
        users=frozenset(_strings(doc.get("users"), f"{path}.users")),
        groups=frozenset(_strings(doc.get("groups"), f"{path}.groups")),
        anonymous=anonymous,
        repositories=_strings(doc.get("repositories"), f"{path}.repositories"),
        actions=frozenset(actions),
        catalog=catalog,
    )
    if not (rule.users or rule.groups or rule.anonymous):
        raise ACLError(f"{path}: names no users, groups or anonymous: it would match nobody")
    return rule


def _strings(value: Any, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items: Sequence[Any] = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) and v for v in items):
        raise ACLError(f"{path}: expected a list of non-empty strings")
    return tuple(items)
