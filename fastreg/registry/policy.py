"""What the registry allows: writes in read-only mode or to a mirrored name, deletes,
redirects and blob mounts (and, with the rules in `validation.py`, the layer URLs a manifest may carry).

Decided here, once, for every way a request comes in; the HTTP layer only asks (a handler never
reads a setting to refuse something itself). Access control is not decided here: it says who
the caller is and what they may pull (`Caller`), and the mount rule below uses that answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.names import is_valid_name
from fastreg.registry.proxy.routing import Route
from fastreg.registry.redirects import Redirector
from fastreg.registry.validation import ManifestURLs


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    delete_enabled: bool = False
    readonly: bool = False
    schema1_enabled: bool = False
    redirect_disable: bool = False
    # Mounting a blob without `from` (OCI 1.1 "automatic content discovery") would let a caller link
    # any blob whose digest it knows; it is on only when no access control is configured.
    automount: bool = True
    # `validation`: which layer URLs a pushed manifest may carry (registry/validation.py)
    manifest_urls: ManifestURLs = field(default_factory=ManifestURLs)
    # `middleware.storage`: where pulls are redirected instead of the driver's presigned URL
    redirector: Redirector | None = None


class Caller(Protocol):
    """Who sends a request, as access control knows them (absent without access control)."""

    def may_pull(self, repository: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Policy:
    settings: RegistrySettings

    def check_writable(self, route: Route | None = None) -> None:
        """Refuse any change to a mirrored repository (``route``: `proxy/routing.py`'s answer
        for the name) or, in read-only mode, to the registry (UNSUPPORTED with the OCI body, as
        Distribution answers a mirror's pushes, deletes and upload starts). A local repository
        beside mirrored namespaces is as writable as on any registry."""
        if route is not None and route.upstream is not None:
            where = route.upstream.namespace or "its upstream"
            raise RegistryError(
                ErrorCode.UNSUPPORTED,
                f"{route.local} is a pull-through cache of {where}: it is read-only",
            )
        if self.settings.readonly:
            raise RegistryError(ErrorCode.UNSUPPORTED, "the registry is in read-only mode")

    def check_delete(self) -> None:
        if not self.settings.delete_enabled:
            raise RegistryError(ErrorCode.UNSUPPORTED, "deletes are disabled")

    @property
    def redirects(self) -> bool:
        """May a pull be sent to the driver's presigned URL (`storage.redirect.disable`)?"""
        return not self.settings.redirect_disable

    def may_mount(self, source: str | None, caller: Caller | None) -> bool:
        """May a blob be linked from ``source`` (from the global store when None)?

        From a repository: when its name is well-formed and the caller may pull from it (a
        caller without that right is not refused: the spec then opens a normal upload, and so
        does a malformed `from`, as in Distribution). Without `from`: only with automount on.
        """
        if source:
            return is_valid_name(source) and (caller is None or caller.may_pull(source))
        return self.settings.automount
