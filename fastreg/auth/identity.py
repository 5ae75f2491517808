"""What every access controller shares: the identity it answers with, its interface, and the
401 challenge (the middleware and the controllers both import this; it imports neither).

Never logged: tokens, passwords, Authorization headers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from aiohttp import web

from fastreg.auth.access import MAX_TOKEN, PULL, REPOSITORY, Access, Grants, Required
from fastreg.config import ConfigError
from fastreg.registry.errors import ErrorCode, RegistryError

if TYPE_CHECKING:  # the token modules load jwt and cryptography: only when tokens are used
    from fastreg.auth.token import Claims

MAX_AUTHORIZATION = MAX_TOKEN + 16
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str
    grants: Grants
    claims: Claims | None = None  # a token's, when it was valid (not admitted by grace)

    def may_pull(self, repository: str) -> bool:
        """What the registry asks before it mounts a blob from ``repository`` (`Caller`)."""
        return self.grants.allows(Access(REPOSITORY, repository, PULL))


class AccessController(Protocol):
    async def authorize(
        self, request: web.Request, route: str, params: Mapping[str, str], required: Required
    ) -> Identity:
        """The caller's identity, or RegistryError(UNAUTHORIZED) carrying the challenge."""
        ...

    async def opened_upload(
        self, request: web.Request, name: str, upload_id: str, identity: Identity
    ) -> None:
        """Called after an upload session opened (POST answered 202)."""
        ...


def challenge(header: str, required: Required) -> RegistryError:
    """401 UNAUTHORIZED with the required access as detail, as Distribution answers."""
    detail = [a.detail() for a in required.challenge_accesses()]
    return RegistryError(ErrorCode.UNAUTHORIZED, detail=detail,
                         headers={"WWW-Authenticate": header})


def quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def read_config_file(what: str, load: Callable[[], T]) -> T:
    """``load()``, its failure a ConfigError naming the key whose file could not be read."""
    try:
        return load()
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{what}: {exc}") from None
