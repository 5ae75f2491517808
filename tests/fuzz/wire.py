"""Raw HTTP to a real fastreg process, and the properties every answer must have.

The fuzz controls each header and byte, so requests go through `http.client`'s low-level calls
(repeated headers, any Host, no Accept-Encoding added, chunked bodies when asked). After each
answer, the lines the server logged since the last one are read from its JSON log, so a failure
is pinned to the request that caused it and Hypothesis can shrink it.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from fastreg.registry.errors import ErrorCode

#: (wire code, status) pairs of the spec/Distribution table: an error body must use one of them
ERROR_PAIRS = frozenset((code.wire, code.status) for code in ErrorCode)
TIMEOUT = 30.0  # detects a hang; no answer takes near that long
_AUTHORITY = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]+)(?::[0-9]{0,5})?")

Headers = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Headers = ()
    body: bytes | None = None
    chunked: bool = False

    def __str__(self) -> str:
        body = "" if self.body is None else f" body={self.body[:120]!r}({len(self.body)} bytes)"
        shown = [(k, v if len(v) < 120 else f"{v[:100]}...({len(v)} chars)") for k, v in self.headers]
        if len(shown) > 12:
            shown = [*shown[:12], ("...", f"{len(shown)} headers in all")]
        chunked = " chunked" if self.chunked else ""
        path = self.path if len(self.path) < 300 else f"{self.path[:250]}...({len(self.path)} chars)"
        return f"{self.method} {path} headers={shown}{chunked}{body}"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> object:
        return json.loads(self.body)

    def error_codes(self) -> list[str]:
        return [e["code"] for e in self.json()["errors"]]  # type: ignore[index]


@dataclass
class Wire:
    """One keep-alive connection to the server, reopened when the server closes it."""

    port: int
    log_path: Path
    conn: http.client.HTTPConnection | None = None
    log_offset: int = 0
    syncs: int = 0
    dropped_keepalives: int = 0
    _partial: bytes = field(default=b"", repr=False)

    @property
    def authority(self) -> str:
        return f"127.0.0.1:{self.port}"

    def send(self, req: Request) -> Reply:
        """Send ``req`` and check every property a response and the log must have. The log is
        read before anything is checked, so no line is left over for the next request."""
        try:
            reply = self._exchange(req)
        finally:
            lines = self.log_lines_until_sync()
        check_reply(req, reply, self.authority)
        check_log(req, lines)
        return reply

    def log_lines_until_sync(self) -> list[str]:
        """What the server logged for the requests so far: a marked `GET /v2/` goes after them
        and the log is read up to its access line (one worker answers in order)."""
        self.syncs += 1
        marker = f"fuzz-sync-{self.syncs}"
        reply = self._exchange(Request("GET", "/v2/", [("X-Request-Id", marker)]))
        assert reply.status == 200, f"the base endpoint answered {reply.status} {reply.body!r}"
        lines: list[str] = []
        deadline = time.monotonic() + TIMEOUT
        while not any(marker in line for line in lines):
            assert time.monotonic() < deadline, f"{marker} never reached the log"
            lines += self.new_log_lines()
            time.sleep(0.001)
        return [line for line in lines if marker not in line]

    def _exchange(self, req: Request) -> Reply:
        reused = self.conn is not None
        try:
            return self._exchange_once(req)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
            self.close()
            if not reused:
                raise AssertionError(f"no answer to {req}: {exc!r}") from exc
            # the server closed a kept-alive connection; the request never reached a handler
            self.dropped_keepalives += 1
            try:
                return self._exchange_once(req)
            except (OSError, http.client.HTTPException) as again:
                self.close()
                raise AssertionError(f"no answer to {req}: {again!r}") from again
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise AssertionError(f"no answer to {req}: {exc!r}") from exc

    def _exchange_once(self, req: Request) -> Reply:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        conn = self.conn
        conn.putrequest(req.method, req.path, skip_host=True, skip_accept_encoding=True)
        names = {k.lower() for k, _ in req.headers}
        if "host" not in names:
            conn.putheader("Host", self.authority)
        for name, value in req.headers:  # what is not latin-1 goes as UTF-8, as some clients do
            conn.putheader(name, value if value.isascii() else value.encode("utf-8"))
        if req.chunked:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            conn.send(_chunked(req.body or b""))
        else:
            if req.body is not None:
                conn.putheader("Content-Length", str(len(req.body)))
            conn.endheaders(req.body)
        resp = conn.getresponse()
        body = resp.read()
        if resp.will_close:
            self.close()
        return Reply(resp.status, resp.getheaders(), body)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def new_log_lines(self) -> list[str]:
        """Complete lines the server wrote since the last call."""
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            data = f.read()
        self.log_offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        return [line.decode(errors="replace") for line in lines if line.strip()]


def _chunked(body: bytes) -> bytes:
    """``body`` as HTTP/1.1 chunks of up to 1000 bytes (a few chunks for most bodies)."""
    parts = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def is_api_path(path: str) -> bool:
    return path.split("?", 1)[0] in ("/v2", "/v2/") or path.startswith("/v2/")


def check_reply(req: Request, reply: Reply, authority: str) -> None:
    """The properties of every answer: no 5xx but a deliberate 503, the OCI error body on every
    API error, no traceback, no Server header, and a Location only in the http(s) scheme on a well-formed host."""
    where = f"{req}\n  -> {reply.status} {reply.headers} {reply.body[:300]!r}"
    assert b"Traceback" not in reply.body, f"traceback in a response body: {where}"
    assert reply.header("Server") is None, f"a Server header naming the runtime: {where}"
    unavailable = reply.status == 503 and _codes(reply) == ["UNAVAILABLE"]
    assert reply.status < 500 or unavailable, f"server error: {where}"
    api_error = reply.status >= 400 and is_api_path(req.path) and req.method != "HEAD"
    if api_error:
        codes = _codes(reply)
        assert codes, f"an API error without the OCI error body: {where}"
        assert (reply.header("Content-Type") or "").startswith("application/json"), (
            f"an OCI error body not typed application/json: {where}"
        )
        assert all((c, reply.status) in ERROR_PAIRS for c in codes), (
            f"error codes {codes} are not the table's for status {reply.status}: {where}"
        )
    location = reply.header("Location")
    if location is not None and not location.startswith("/"):
        parts = urlsplit(location)
        assert parts.scheme in ("http", "https"), f"Location in another scheme: {where}"
        assert _AUTHORITY.fullmatch(parts.netloc), f"Location on a malformed host: {where}"


def _codes(reply: Reply) -> list[str]:
    """The codes of an OCI error body, [] when the body is not one."""
    try:
        errors = reply.json()["errors"]  # type: ignore[index]
    except (ValueError, TypeError, KeyError):
        return []
    if not isinstance(errors, list) or not errors:
        return []
    ok = all(
        isinstance(e, dict) and isinstance(e.get("code"), str) and isinstance(e.get("message"), str)
        for e in errors
    )
    return [e["code"] for e in errors] if ok else []


def check_log(req: Request | str, lines: Iterable[str]) -> None:
    """No line at level error or critical, no traceback, nothing but JSON log lines."""
    for line in lines:
        assert "Traceback" not in line, f"traceback in the server log after {req}: {line[:3000]}"
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"a log line that is not JSON after {req}: {line[:3000]}") from None
        level = entry.get("level") if isinstance(entry, dict) else None
        assert level not in ("error", "fatal"), f"error logged after {req}: {line[:3000]}"
