"""The benchmark's clients: cheap on CPU, and every answer is checked.

* Large blobs: a streaming push client (monolithic PUT, or chunked PATCHes) sending one random
  block over and over from memory, its digest computed once ahead of time; a pull client reading
  with large ``readinto`` calls while another thread hashes the previous buffer.
* Small requests: ``wrk`` with a generated Lua script that checks each response's status and a
  header (the digest) or a piece of the body, and fails the run on any mismatch, non-2xx or
  socket error; ``ab`` as an alternative load tool (status and length checks only).
* Many small pushes: asyncio + aiohttp with bounded concurrency, docker's order of requests
  (HEAD, POST, PUT ?digest=).

Must not import fastreg: these talk HTTP only.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import queue
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

MiB = 1024 * 1024
BLOCK = MiB
TIMEOUT = 900.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


class CheckFailed(AssertionError):
    """A response had the wrong status, digest, length or body."""


# --------------------------------------------------------------------------- blob data


@dataclass(frozen=True)
class Blob:
    """``size`` bytes made of one pseudo-random 1 MiB block (``seed``) repeated."""

    seed: int
    size: int

    @property
    def block(self) -> bytes:
        return _block(self.seed)

    @property
    def digest(self) -> str:
        return _digest(self.seed, self.size)

    def iter_range(self, start: int, length: int) -> Iterator[memoryview]:
        """The bytes ``[start, start+length)`` as views of the block (no copies)."""
        view = memoryview(self.block)
        pos, end = start, start + length
        while pos < end:
            off = pos % BLOCK
            n = min(BLOCK - off, end - pos)
            yield view[off : off + n]
            pos += n

    def write_to(self, path: Path) -> None:
        with open(path, "wb") as f:
            f.writelines(self.iter_range(0, self.size))


@cache
def _block(seed: int) -> bytes:
    # A seeded generator, so every run pushes the same bytes (and digests can be cached).
    out = bytearray()
    counter = 0
    while len(out) < BLOCK:
        out += hashlib.shake_256(f"fastreg-bench-{seed}-{counter}".encode()).digest(65536)
        counter += 1
    return bytes(out[:BLOCK])


@cache
def _digest(seed: int, size: int) -> str:
    h = hashlib.sha256()
    for chunk in Blob(seed, size).iter_range(0, size):
        h.update(chunk)
    return "sha256:" + h.hexdigest()


# --------------------------------------------------------------------------- streaming


def _path_of(location: str) -> str:
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _with_query(path: str, query: str) -> str:
    return path + ("&" if "?" in path else "?") + query


def _expect(resp: http.client.HTTPResponse, status: int, what: str) -> bytes:
    body = resp.read()
    if resp.status != status:
        raise CheckFailed(f"{what}: HTTP {resp.status}, wanted {status}: {body[:300]!r}")
    return body


def _start_upload(conn: http.client.HTTPConnection, repo: str) -> str:
    conn.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    resp = conn.getresponse()
    _expect(resp, 202, "POST upload")
    return _path_of(resp.getheader("Location") or "")


def _check_committed(resp: http.client.HTTPResponse, blob: Blob) -> None:
    _expect(resp, 201, "commit upload")
    got = resp.getheader("Docker-Content-Digest")
    if got != blob.digest:
        raise CheckFailed(f"commit answered digest {got}, pushed {blob.digest}")


def push_monolithic(port: int, repo: str, blob: Blob) -> None:
    """POST, then one PUT ?digest= streaming the whole blob."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        path = _start_upload(conn, repo)
        conn.putrequest("PUT", _with_query(path, f"digest={blob.digest}"), skip_accept_encoding=True)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(blob.size))
        conn.endheaders()
        for chunk in blob.iter_range(0, blob.size):
            conn.send(chunk)
        _check_committed(conn.getresponse(), blob)
    finally:
        conn.close()


def push_chunked(port: int, repo: str, blob: Blob, chunk: int) -> None:
    """POST, PATCHes of ``chunk`` bytes with Content-Range, then PUT ?digest= with no body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        path = _start_upload(conn, repo)
        for start in range(0, blob.size, chunk):
            n = min(chunk, blob.size - start)
            conn.putrequest("PATCH", path, skip_accept_encoding=True)
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("Content-Range", f"{start}-{start + n - 1}")
            conn.putheader("Content-Length", str(n))
            conn.endheaders()
            for piece in blob.iter_range(start, n):
                conn.send(piece)
            resp = conn.getresponse()
            _expect(resp, 202, f"PATCH {start}-{start + n - 1}")
            if resp.getheader("Range") != f"0-{start + n - 1}":
                raise CheckFailed(f"PATCH answered Range {resp.getheader('Range')}")
            path = _path_of(resp.getheader("Location") or path)
        conn.request("PUT", _with_query(path, f"digest={blob.digest}"),
                     headers={"Content-Length": "0"})
        _check_committed(conn.getresponse(), blob)
    finally:
        conn.close()


def pull(port: int, path: str, blob: Blob, sha256: bool = True, bufsize: int = 4 * MiB) -> None:
    """GET ``path`` and check length and sha256; hashing overlaps the next read.

    ``sha256=False`` checks the length only: a diagnostic for telling whether the client's
    hashing (about one core at ~1 GiB/s) is what limits a pull.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        if resp.status != 200:
            raise CheckFailed(f"GET {path}: HTTP {resp.status}: {resp.read()[:300]!r}")
        length = resp.getheader("Content-Length")
        if length is not None and int(length) != blob.size:
            raise CheckFailed(f"GET {path}: Content-Length {length}, wanted {blob.size}")
        got, digest = _read_hashing(resp, bufsize) if sha256 else (_read_only(resp, bufsize), "")
        if got != blob.size or (sha256 and digest != blob.digest):
            raise CheckFailed(f"GET {path}: {got} bytes {digest}, wanted {blob.size} {blob.digest}")
    finally:
        conn.close()


def _read_only(resp: http.client.HTTPResponse, bufsize: int) -> int:
    view = memoryview(bytearray(bufsize))
    total = 0
    while n := resp.readinto(view):
        total += n
    return total


def _read_hashing(resp: http.client.HTTPResponse, bufsize: int) -> tuple[int, str]:
    buffers = [bytearray(bufsize) for _ in range(3)]
    free: queue.Queue[int] = queue.Queue()
    full: queue.Queue[tuple[int, int] | None] = queue.Queue()
    for i in range(len(buffers)):
        free.put(i)
    h = hashlib.sha256()

    def hasher() -> None:
        while (item := full.get()) is not None:
            i, n = item
            h.update(memoryview(buffers[i])[:n])  # releases the GIL for large buffers
            free.put(i)

    t = threading.Thread(target=hasher, daemon=True)
    t.start()
    total = 0
    try:
        while True:
            i = free.get()
            n = resp.readinto(memoryview(buffers[i]))
            if not n:
                break
            total += n
            full.put((i, n))
    finally:
        full.put(None)
        t.join()
    return total, "sha256:" + h.hexdigest()


def run_parallel(jobs: list[tuple[object, ...]]) -> None:
    """Run ``(function, *args)`` jobs in threads at once; re-raise the first failure."""
    errors: list[BaseException] = []

    def call(job: tuple[object, ...]) -> None:
        fn, *args = job
        try:
            fn(*args)  # type: ignore[operator]
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# --------------------------------------------------------------------------- wrk / ab


@dataclass(frozen=True)
class Check:
    """What every response of a wrk run must look like."""

    status: int = 200
    header: str | None = None  # lower-case name
    value: str | None = None
    body_contains: str | None = None


_WRK_LUA = """
local expect_status = {status}
local expect_header = {header}
local expect_value = {value}
local expect_body = {body}
wrk.method = {method}
{headers}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0; checked = 0; first_bad = "" end
function response(status, headers, body)
  checked = checked + 1
  local why = nil
  if status ~= expect_status then
    why = "status " .. status
  elseif expect_header ~= nil then
    local got = nil
    for k, v in pairs(headers) do
      if string.lower(k) == expect_header then got = v end
    end
    if got ~= expect_value then why = expect_header .. "=" .. tostring(got) end
  end
  if why == nil and expect_body ~= nil then
    if body == nil or string.find(body, expect_body, 1, true) == nil then why = "body" end
  end
  if why ~= nil then
    bad = bad + 1
    if first_bad == "" then first_bad = why end
  end
end
function done(summary, latency, requests)
  local b, c, why = 0, 0, ""
  for _, t in ipairs(threads) do
    b = b + t:get("bad"); c = c + t:get("checked")
    if why == "" then why = t:get("first_bad") end
  end
  io.write(string.format("BENCHCHECK bad=%d checked=%d first=%s\\n", b, c, why))
end
"""


def _lua_str(value: str | None) -> str:
    return "nil" if value is None else json.dumps(value)  # JSON strings are valid Lua strings


def wrk(url: str, *, connections: int, seconds: float, workdir: Path, check: Check,
        method: str = "GET", headers: dict[str, str] | None = None) -> float:
    """Requests/s of ``wrk -t1`` (one thread is plenty, and leaves the cores to the server)."""
    script = workdir / "check.lua"
    script.write_text(_WRK_LUA.format(
        status=check.status, header=_lua_str(check.header), value=_lua_str(check.value),
        body=_lua_str(check.body_contains), method=_lua_str(method),
        headers="\n".join(f"wrk.headers[{_lua_str(k)}] = {_lua_str(v)}"
                          for k, v in (headers or {}).items()),
    ))
    argv = [shutil.which("wrk") or "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--timeout", "10s", "-s", str(script), url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    text = out.stdout + out.stderr
    m = re.search(r"BENCHCHECK bad=(\d+) checked=(\d+) first=(.*)", text)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if out.returncode != 0 or m is None or rate is None:
        raise CheckFailed(f"wrk failed ({out.returncode}): {text[-1500:]}")
    if int(m.group(1)):
        raise CheckFailed(f"wrk: {m.group(1)} of {m.group(2)} responses wrong "
                          f"(first: {m.group(3)}) for {method} {url}")
    if int(m.group(2)) == 0:
        raise CheckFailed(f"wrk: no response completed for {method} {url}")
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: (.*)"):
        bad = re.search(pattern, text)
        if bad:
            raise CheckFailed(f"wrk: {bad.group(0)} for {method} {url}")
    return float(rate.group(1))


def ab(url: str, *, connections: int, seconds: float, method: str = "GET",
       headers: dict[str, str] | None = None) -> float:
    """Requests/s of ApacheBench (checks status and a constant length, not the digest)."""
    argv = [shutil.which("ab") or "ab", "-q", "-k", "-c", str(connections),
            "-t", str(max(1, round(seconds))), "-n", "100000000", "-s", "10"]
    if method == "HEAD":
        argv.append("-i")
    elif method != "GET":
        raise ValueError(f"ab: {method} is not supported here")
    for k, v in (headers or {}).items():
        argv += ["-H", f"{k}: {v}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 60,
                         check=False)
    text = out.stdout + out.stderr
    rate = re.search(r"Requests per second:\s+([\d.]+)", text)
    failed = re.search(r"Failed requests:\s+(\d+)", text)
    if out.returncode != 0 or rate is None or failed is None:
        raise CheckFailed(f"ab failed ({out.returncode}): {text[-1500:]}")
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", text)
    if int(failed.group(1)) or non2xx:
        raise CheckFailed(f"ab: failed={failed.group(1)} "
                          f"non-2xx={non2xx.group(1) if non2xx else 0} for {method} {url}")
    return float(rate.group(1))


# --------------------------------------------------------------------------- small pushes


@dataclass(frozen=True)
class SmallBlob:
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()


def small_blobs(count: int, size: int, salt: str) -> list[SmallBlob]:
    return [SmallBlob(hashlib.shake_256(f"{salt}-{i}".encode()).digest(size)) for i in range(count)]


def image_manifest(config: SmallBlob, layers: list[SmallBlob], note: str = "") -> bytes:
    body: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": len(config.data)},
        "layers": [{"mediaType": OCI_LAYER, "digest": b.digest, "size": len(b.data)}
                   for b in layers],
    }
    if note:
        body["annotations"] = {"org.opencontainers.image.version": note}
    return json.dumps(body, separators=(",", ":")).encode()


class AsyncPusher:
    """Docker-ordered small pushes over one aiohttp session, ``concurrency`` at a time."""

    def __init__(self, base_url: str, concurrency: int) -> None:
        self.base = base_url
        self.limit = asyncio.Semaphore(concurrency)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency, force_close=False),
            timeout=aiohttp.ClientTimeout(total=300),
            auto_decompress=False,
        )

    async def close(self) -> None:
        await self.session.close()

    def _url(self, location: str) -> str:
        return location if location.startswith("http") else self.base + location

    async def push_blob(self, repo: str, blob: SmallBlob) -> None:
        async with self.limit:
            url = f"{self.base}/v2/{repo}/blobs/{blob.digest}"
            async with self.session.head(url) as r:
                if r.status == 200:
                    return  # already there: docker skips the upload
                if r.status != 404:
                    raise CheckFailed(f"HEAD blob: HTTP {r.status}")
            async with self.session.post(f"{self.base}/v2/{repo}/blobs/uploads/") as r:
                await r.read()
                if r.status != 202:
                    raise CheckFailed(f"POST upload: HTTP {r.status}")
                location = self._url(r.headers["Location"])
            sep = "&" if "?" in location else "?"
            async with self.session.put(
                f"{location}{sep}digest={blob.digest}", data=blob.data,
                headers={"Content-Type": "application/octet-stream"},
            ) as r:
                body = await r.read()
                if r.status != 201 or r.headers.get("Docker-Content-Digest") != blob.digest:
                    raise CheckFailed(f"PUT blob: HTTP {r.status} "
                                      f"{r.headers.get('Docker-Content-Digest')}: {body[:200]!r}")

    async def put_manifest(self, repo: str, ref: str, manifest: bytes) -> None:
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        async with self.limit, self.session.put(
            f"{self.base}/v2/{repo}/manifests/{ref}", data=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        ) as r:
            body = await r.read()
            if r.status != 201 or r.headers.get("Docker-Content-Digest") != digest:
                raise CheckFailed(f"PUT manifest {ref}: HTTP {r.status} "
                                  f"{r.headers.get('Docker-Content-Digest')}: {body[:200]!r}")


def run_async(coro_factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``coro_factory()`` on uvloop when installed (the client must stay cheap)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro_factory())
        return
    uvloop.run(coro_factory())
