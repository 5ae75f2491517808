"""Middlewares and response hooks of the API, each with one job: `access_log` (times and logs
every request, the failed ones too), `errors` (turns any exception into the OCI error body),
`host_check` (400 for a Host that cannot go into a URL). Their order, and why, is in
`fastreg.server.pipeline`. `add_headers` (`on_response_prepare`) adds the API version header and
the configured `http.headers` to every response, errors included.
"""

from __future__ import annotations

import logging
import time

import orjson
from aiohttp import http_exceptions, web
from aiohttp.typedefs import Handler

from fastreg.api.context import (
    ACTOR,
    FAILURE,
    HTTP,
    REQUEST_ID,
    REQUEST_IDS,
    RESOLVED,
    Resolved,
    client_addr,
    valid_host,
)
from fastreg.api.errors import error_response
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.storage.base import StorageError

log = logging.getLogger("fastreg.access")
errlog = logging.getLogger("fastreg.api")

API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")


@web.middleware
async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id", "")[:64] or request.app[REQUEST_IDS].next()
    request[REQUEST_ID] = request_id
    client_addr(request)  # now, while the transport is there
    started = time.perf_counter()
    status = 500
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # a redirect, raised past `errors`
        status = exc.status
        raise
    finally:
        _log_response(request, response, status, time.perf_counter() - started)


def _log_response(
    request: web.Request, response: web.StreamResponse | None, status: int, seconds: float
) -> None:
    """Distribution's "response completed" line (registry/handlers/app.go: the request logger's
    `http.request.*` fields, the route's `vars.*`, `auth.user.name`, the response logger's
    `http.response.*`); a failed request is "response completed with error" with its `err.code`
    and `err.message`, at level error for a 5xx only (Distribution logs a 404 at error level,
    which pages an operator for every client typo). fastreg adds `route`, `digest` and
    `bytes_in`."""
    # `log.accesslog.disabled`, or `log.level` above info (a 5xx still logs at error)
    if not log.isEnabledFor(logging.ERROR if status >= 500 else logging.INFO):
        return
    resolved: Resolved | None = request.get(RESOLVED)
    headers = request.headers
    fields: dict[str, object] = {
        "http.request.host": request.host,
        "http.request.id": request[REQUEST_ID],
        "http.request.method": request.method,
        "http.request.remoteaddr": client_addr(request),
        "http.request.uri": logged_uri(request),
        "http.request.useragent": headers.get("User-Agent", ""),
        "http.request.contenttype": headers.get("Content-Type") or None,
        "http.response.contenttype": (response.headers.get("Content-Type") or None)
        if response is not None else None,
        "http.response.duration": go_duration(seconds),
        "http.response.duration.epoch": round(seconds, 9),
        "http.response.status": status,
        "http.response.written": sent_bytes(request, response),
        "auth.user.name": request.get(ACTOR),
        "route": resolved.handled_route if resolved is not None else None,
        "digest": _digest(resolved, response),
        "bytes_in": received_bytes(request),
    }
    if resolved is not None:
        for name, value in resolved.params.items():
            fields["vars." + name] = value
    failure: RegistryError | None = request.get(FAILURE)
    if status < 400:
        log.info("response completed", extra=fields)
        return
    if failure is not None:
        # what logrus writes for Distribution's errcode.ErrorCode: its Error(), "manifest unknown"
        fields["err.code"] = failure.code.wire.lower().replace("_", " ")
        fields["err.message"] = failure.message
        if failure.detail is not None:
            fields["err.detail"] = _detail(failure.detail)
    log.log(logging.ERROR if status >= 500 else logging.INFO, "response completed with error",
            extra=fields)  # fmt: skip


def _detail(detail: object) -> str:
    """`err.detail` as one string (Distribution's is the text of a Go error), at most 200 chars."""
    text = detail if isinstance(detail, str) else orjson.dumps(detail, default=str).decode()
    return text[:200]


# query parameters of the API that carry no secret (a token in `?token=` or `?access_token=`,
# an upload's `_state`, anything unknown is left out of the log)
_LOGGED_PARAMS = frozenset({"n", "last", "mount", "from"})


def logged_uri(request: web.Request) -> str:
    """`http.request.uri`: the path as sent, and of the query only `_LOGGED_PARAMS`."""
    url = request.rel_url
    if not url.raw_query_string:
        return url.raw_path
    kept = [(k, v) for k, v in url.query.items() if k in _LOGGED_PARAMS]
    return str(url.with_query(kept)) if kept else url.raw_path


def go_duration(seconds: float) -> str:
    """Go's `time.Duration.String()`: `850ns`, `1.5µs`, `12.345678ms`, `2.5s`, `1m3s`, `1h0m0s`."""
    ns = max(0, round(seconds * 1e9))
    if ns == 0:
        return "0s"
    if ns < 1_000_000_000:
        if ns < 1000:
            return f"{ns}ns"
        return _decimal(ns, 1000, 3) + "µs" if ns < 1_000_000 else _decimal(ns, 1_000_000, 6) + "ms"
    hours, ns = divmod(ns, 3_600_000_000_000)
    minutes, ns = divmod(ns, 60_000_000_000)
    text = _decimal(ns, 1_000_000_000, 9) + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


def _decimal(value: int, unit: int, digits: int) -> str:
    whole, fraction = divmod(value, unit)
    decimals = f"{fraction:0{digits}d}".rstrip("0")
    return f"{whole}.{decimals}" if decimals else str(whole)


def _digest(resolved: Resolved | None, response: web.StreamResponse | None) -> str | None:
    if response is not None and "Docker-Content-Digest" in response.headers:
        return response.headers["Docker-Content-Digest"]
    if resolved is None or not resolved.accepted:
        return None
    return resolved.params.get("digest") or None


def received_bytes(request: web.Request) -> int:
    """Body bytes received, as counted by the stream (chunked bodies too)."""
    return int(getattr(request.content, "total_bytes", 0))


def sent_bytes(request: web.Request, response: web.StreamResponse | None) -> int:
    """Body bytes of a response: its length (a `web.Response` is sent after the middlewares ran,
    `sendfile` bypasses aiohttp's writer), else, for a chunked stream, what was written (which
    aiohttp counts with the headers)."""
    if response is None or request.method == "HEAD" or response.status in (204, 304):
        return 0
    if response.content_length is not None:
        return response.content_length
    return response.body_length if response.prepared else 0


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:  # noqa: BLE001 - every failure is answered by _answer
        try:
            return _answer(request, exc)
        finally:
            drop_tracebacks(exc)


def drop_tracebacks(exc: BaseException) -> None:
    """Let go of the frames an answered failure passed through, now, not at the next full gc.

    aiohttp's request stream keeps the exception that ended it (a client that reset the
    connection mid-body), and that exception's traceback holds every frame between the socket
    and here, and so the request, its stream, and each frame's locals: the body batch being
    gathered. Stream -> exception -> traceback -> frames -> request -> stream is a cycle, freed
    only by a full collection, which a server that mostly holds long-lived objects seldom runs:
    measured, 200 PATCHes reset mid-body kept 313 MiB (1.5 MiB each) until a `gc.collect()`,
    and three rounds of them grew the process by 928 MiB. Without the tracebacks (the failure is
    answered and logged by now) the frames go by reference counting when the request ends, and
    the rounds leave nothing referenced (RSS then stays flat at what glibc keeps, server/allocator.py).
    """
    pending = [exc]
    seen: set[int] = set()
    while pending:
        e = pending.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        e.__traceback__ = None
        pending.extend(x for x in (e.__cause__, e.__context__) if x is not None)


def _answer(request: web.Request, failure: Exception) -> web.StreamResponse:
    """The OCI error answer to a failed request; a redirect (HTTPException below 400) is raised."""
    try:
        raise failure
    except RegistryError as err:
        return _failed(request, err)
    except StorageError as exc:
        errlog.error("storage error", extra={"http.request.id": request.get(REQUEST_ID), "error": str(exc)})
        return _failed(request, RegistryError(ErrorCode.UNAVAILABLE, detail="storage backend error"))
    except (http_exceptions.HttpProcessingError, ConnectionError) as exc:
        # the client sent a broken body or went away mid-request: its fault, not a server error
        return _failed(request, RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, detail=str(exc)[:200]))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _code_for_status(exc.status)
        return _failed(request, RegistryError(code, exc.reason))
    except Exception:  # noqa: BLE001 - the one place every unexpected failure becomes 500 UNKNOWN
        errlog.exception("unhandled error", extra={"http.request.id": request.get(REQUEST_ID)})
        return _failed(request, RegistryError(ErrorCode.UNKNOWN))


def _failed(request: web.Request, err: RegistryError) -> web.Response:
    """The error answer, the error kept for the access log's `err.code`."""
    request[FAILURE] = err
    return error_response(err)


@web.middleware
async def host_check(request: web.Request, handler: Handler) -> web.StreamResponse:
    """400 for a malformed Host (RFC 9112 3.2: "MUST respond with a 400"), as Distribution does:
    the Host goes into every Location and notification URL, so `evil.example/x?` must not."""
    if not valid_host(request.host):
        raise RegistryError(ErrorCode.HOST_INVALID, detail={"Host": request.host[:100]})
    return await handler(request)


def _code_for_status(status: int) -> ErrorCode:
    if status == 413:
        return ErrorCode.SIZE_INVALID
    for code in (ErrorCode.UNSUPPORTED, ErrorCode.NAME_UNKNOWN, ErrorCode.UNAUTHORIZED,
                 ErrorCode.DENIED, ErrorCode.TOOMANYREQUESTS, ErrorCode.UNAVAILABLE):
        if code.status == status:
            return code
    return ErrorCode.UNKNOWN if status >= 500 else ErrorCode.BLOB_UPLOAD_INVALID


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    # aiohttp names itself and the Python version in `Server` (set before this hook runs): that
    # tells an attacker what to aim at and a client nothing; Distribution sends no Server header
    response.headers.popall("Server", None)
    response.headers[API_VERSION[0]] = API_VERSION[1]
    for name, value in request.app[HTTP].headers:
        response.headers.add(name, value)
