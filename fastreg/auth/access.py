"""What a request needs, what a credential grants, and the scope grammar both sides speak.

Required access follows Distribution (`registry/handlers/app.go`): GET/HEAD need `pull`;
POST/PUT/PATCH need `pull,push`; DELETE needs `delete`; `/v2/_catalog` needs
`registry:catalog:*`; `/v2/` only needs a valid credential. A mount (`POST ...?mount=&from=`)
also asks for `pull` on `from`, but as an option: without it the mount is skipped and a normal
upload opens (the spec's answer), never a 403. A granted action `*` grants every action.

Scopes are `type[(class)]:name:actions`; the name may hold a `host:port`, so the type is split
from the left and the actions from the right.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

PULL = "pull"
PUSH = "push"
DELETE = "delete"
ALL = "*"
REPOSITORY = "repository"
REGISTRY = "registry"
CATALOG = "catalog"

_TYPE_RE = re.compile(r"([a-z0-9]+)(?:\(([a-z0-9]+)\))?")
_ACTION_RE = re.compile(r"[a-z]*|\*")
# a scope name: printable ASCII without spaces, quotes or backslashes (it goes into a header)
_NAME_RE = re.compile(r"[!#-\[\]-~]+")
MAX_SCOPE = 512
#: The longest bearer token accepted (a JWT with many grants stays far below).
MAX_TOKEN = 64 * 1024


class Access(NamedTuple):  # a tuple: built on every request, cheaply
    """One action on one resource, e.g. ``repository:team/app:push``."""

    type: str
    name: str
    action: str

    def detail(self) -> dict[str, str]:
        """The shape Distribution puts in the error detail (Go field names)."""
        return {"Type": self.type, "Class": "", "Name": self.name, "Action": self.action}


class Required(NamedTuple):
    """Everything in ``accesses`` must be granted, and pull on ``mount_from`` for a token."""

    accesses: tuple[Access, ...]
    mount_from: str | None = None

    def challenge_accesses(self) -> tuple[Access, ...]:
        """What the client should ask the token server for: the mount source too."""
        if self.mount_from is None:
            return self.accesses
        return (*self.accesses, Access(REPOSITORY, self.mount_from, PULL))


@dataclass(frozen=True, slots=True)
class Scope:
    type: str
    klass: str
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        rtype = f"{self.type}({self.klass})" if self.klass else self.type
        return f"{rtype}:{self.name}:{','.join(self.actions)}"


def actions_for(method: str) -> tuple[str, ...]:
    if method in ("POST", "PUT", "PATCH"):
        return (PULL, PUSH)
    if method == "DELETE":
        return (DELETE,)
    return (PULL,)


def required_access(
    route: str, method: str, name: str | None, query: Mapping[str, str]
) -> Required:
    """The access a request on ``route`` needs (``name`` is the raw, unvalidated repository)."""
    if route == "base":
        return Required(())
    if route == "catalog":
        return Required((Access(REGISTRY, CATALOG, ALL),))
    if name is None:  # every other route carries a repository; refuse rather than guess
        return Required((Access(REGISTRY, route, ALL),))
    accesses = tuple(Access(REPOSITORY, name, action) for action in actions_for(method))
    mount_from = None
    if route == "upload_start" and method == "POST" and "mount" in query:
        mount_from = query.get("from") or None
    return Required(accesses, mount_from)


def scope_param(accesses: Iterable[Access]) -> str:
    """``repository:a:pull,push repository:b:pull``: actions grouped per resource, in order."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for access in accesses:
        actions = grouped.setdefault((access.type, access.name), [])
        if access.action not in actions:
            actions.append(access.action)
    return " ".join(f"{t}:{n}:{','.join(a)}" for (t, n), a in grouped.items())


def printable_name(name: str) -> bool:
    """True when ``name`` can be quoted into a challenge header as it is."""
    return len(name) <= MAX_SCOPE and _NAME_RE.fullmatch(name) is not None


def parse_scope(text: str) -> Scope | None:
    """One scope, or None when it does not follow the grammar."""
    if len(text) > MAX_SCOPE:
        return None
    first, last = text.find(":"), text.rfind(":")
    if first <= 0 or last == first:
        return None
    match = _TYPE_RE.fullmatch(text[:first])
    name = text[first + 1 : last]
    if match is None or not printable_name(name):
        return None
    actions = tuple(a for a in text[last + 1 :].split(",") if a)
    if not all(_ACTION_RE.fullmatch(a) for a in actions):
        return None
    return Scope(match.group(1), match.group(2) or "", name, tuple(dict.fromkeys(actions)))


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Scopes from query or form values, each possibly holding several separated by spaces."""
    scopes: list[Scope] = []
    for value in values:
        for text in value.split():
            scope = parse_scope(text)
            if scope is not None:
                scopes.append(scope)
    return scopes


class MalformedAccess(Exception):
    """An ``access`` claim that is not a list of ``{type, name, actions}`` entries."""


class Grants:
    """The access a credential carries: ``(type, name) -> actions``."""

    __slots__ = ("_by_resource", "_everything")

    def __init__(self, entries: Iterable[tuple[str, str, Iterable[str]]] = (), *,
                 everything: bool = False) -> None:
        by_resource: dict[tuple[str, str], set[str]] = {}
        for rtype, name, actions in entries:
            by_resource.setdefault((rtype, name), set()).update(actions)
        self._by_resource = {k: frozenset(v) for k, v in by_resource.items()}
        self._everything = everything

    @classmethod
    def everything(cls) -> Grants:
        """All access to everything (a valid htpasswd user, as in Distribution)."""
        return cls(everything=True)

    @classmethod
    def from_claim(cls, claim: Any) -> Grants:
        """The ``access`` claim of a token (MalformedAccess when it is not a list of entries)."""
        if claim is None:
            return cls()
        if not isinstance(claim, list):
            raise MalformedAccess("access claim is not a list")
        entries: list[tuple[str, str, list[str]]] = []
        for item in claim:
            if not isinstance(item, dict):
                raise MalformedAccess("access entry is not an object")
            rtype, name, actions = item.get("type"), item.get("name"), item.get("actions") or []
            if not isinstance(rtype, str) or not isinstance(name, str):
                raise MalformedAccess("access entry without type or name")
            if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
                raise MalformedAccess("access entry actions are not strings")
            entries.append((rtype, name, actions))
        return cls(entries)

    def allows(self, access: Access) -> bool:
        if self._everything:
            return True
        actions = self._by_resource.get((access.type, access.name))
        return actions is not None and (ALL in actions or access.action in actions)

    def allows_all(self, accesses: Iterable[Access]) -> bool:
        return all(self.allows(a) for a in accesses)
