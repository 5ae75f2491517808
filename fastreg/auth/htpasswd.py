"""Users from an htpasswd file (bcrypt entries, as Distribution accepts), and Basic credentials.

The file is re-read when its mtime, size or inode changes (looked at most once a second, off the
event loop). Every failed check costs one bcrypt run, an unknown user included (against a dummy
hash of the file's highest cost), so the answer time does not tell which users exist. Good
credentials are remembered for a while, keyed by the raw header, so a client pushing hundreds
of layers pays for bcrypt once; a changed file forgets them all.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import bcrypt

from fastreg.auth.cache import CredentialCache
from fastreg.auth.watch import WatchedFile

log = logging.getLogger("fastreg.auth")

_BCRYPT_RE = re.compile(rb"\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}")
DEFAULT_COST = 10
REMEMBER_SECONDS = 300.0
MAX_PASSWORD = 72  # bcrypt's limit; longer passwords are cut, as Apache's htpasswd does


@dataclass(frozen=True, slots=True)
class Users:
    hashes: dict[str, bytes]
    dummy: bytes  # what an unknown user's password is checked against


def parse_basic(header: str) -> tuple[str, str] | None:
    """``Basic base64(user:password)`` -> (user, password); None when malformed."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value or " " in value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep or not user:
        return None
    return user, password


def parse_htpasswd(text: bytes, path: str) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        user, sep, hashed = line.partition(b":")
        if not sep or not _BCRYPT_RE.fullmatch(hashed):
            log.warning("htpasswd entry ignored: not user:bcrypt-hash",
                        extra={"path": path, "line": number})
            continue
        users[user.decode("utf-8", "replace")] = hashed
    return users


def parse_users(text: bytes, path: str = "htpasswd") -> Users:
    """Parse the file and make the dummy hash (one bcrypt run: call it on a thread)."""
    hashes = parse_htpasswd(text, path)
    costs = [int(m.group(1)) for h in hashes.values() if (m := _BCRYPT_RE.fullmatch(h))]
    cost = max(4, min(max(costs, default=DEFAULT_COST), 31))
    return Users(hashes, bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost)))


def _check(password: str, hashed: bytes) -> bool:
    return bcrypt.checkpw(password.encode("utf-8")[:MAX_PASSWORD], hashed)


class HtpasswdFile:
    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._file = WatchedFile(path, lambda text: parse_users(text, path), clock=clock)
        self._good: CredentialCache[str] = CredentialCache(maxsize=4096, clock=clock)
        self._generation = 0

    def load(self) -> None:
        """Read the file now (at start-up: a missing or unreadable file stops the start)."""
        self._file.load()

    async def authenticate(self, header: str) -> str | None:
        """The user a ``Basic`` Authorization header names, when its password is right."""
        await self._users()
        raw = header.encode("utf-8", "surrogateescape")
        user = self._good.get(raw)
        if user is not None:
            return user
        creds = parse_basic(header)
        if creds is None:
            return None
        if not await self.check(*creds):
            return None
        self._good.put(raw, creds[0], self._clock() + REMEMBER_SECONDS)
        return creds[0]

    async def check(self, user: str, password: str) -> bool:
        """One bcrypt run whatever the user, on a thread (bcrypt takes tens of milliseconds)."""
        users = await self._users()
        hashed = users.hashes.get(user)
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, _check, password, hashed or users.dummy)
        return ok and hashed is not None

    async def exists(self, user: str) -> bool:
        return user in (await self._users()).hashes

    async def _users(self) -> Users:
        users = await self._file.current()
        if self._file.generation != self._generation:
            self._generation = self._file.generation
            self._good.clear()  # passwords may have changed or users gone
        return users
