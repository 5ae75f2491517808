"""One big blob through fastreg's S3 driver: push, commit (server-side multipart copy) and pull.

Starts a SeaweedFS exactly as the tests do (tests/seaweed.py, needs the test extra) and fastreg on
a bucket there, pushes one blob of --size GiB as a docker client does (POST, one streamed PATCH,
PUT ?digest=), then pulls it back through fastreg (redirect disabled: the bytes stream through
the registry; --redirect follows the 307 to SeaweedFS instead) and checks its sha256. Prints
MB/s for each phase and the registry's peak RSS (sampled every 50 ms from /proc). Figures are
printed, never asserted.

    .venv/bin/python -m benchmarks.s3_bigblob --size 6
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Self

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.seaweed import SeaweedFS

MiB = 1024 * 1024


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Peak:
    """The peak RSS of a process, sampled on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.05)

    def __enter__(self) -> Self:
        self.peak = rss_kib(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def start_fastreg(
    workdir: Path, weed: SeaweedFS, bucket: str, redirect: bool
) -> tuple[subprocess.Popen[bytes], int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    s3 = weed.s3_parameters(bucket)
    cfg = workdir / "config.yml"
    cfg.write_text(
        json.dumps(
            {  # JSON is YAML
                "version": "0.1",
                "log": {"level": "warn"},
                "storage": {"s3": s3, "redirect": {"disable": not redirect}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    log = open(workdir / "fastreg.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastreg", "serve", str(cfg)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit((workdir / "fastreg.log").read_text())
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.1)
    raise SystemExit("fastreg did not start")


def _path(location: str) -> str:
    url = urllib.parse.urlsplit(location)
    return f"{url.path}?{url.query}" if url.query else url.path


def push(port: int, size: int, block: bytes, digest: str) -> tuple[float, float]:
    """Seconds for the streamed PATCH and for the final PUT (verify + server-side copy)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    conn.request("POST", "/v2/bench/big/blobs/uploads/")
    resp = conn.getresponse()
    resp.read()
    location = _path(resp.headers["Location"])
    started = time.monotonic()
    conn.putrequest("PATCH", location)
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    view = memoryview(block)
    for _ in range(size // len(block)):
        conn.send(view)
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 202, (resp.status, resp.headers)
    patched = time.monotonic()
    location = _path(resp.headers["Location"])
    sep = "&" if "?" in location else "?"
    conn.request("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}")
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 201, (resp.status, body[:300])
    return patched - started, time.monotonic() - patched


def pull(port: int, digest: str) -> tuple[float, int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    started = time.monotonic()
    conn.request("GET", f"/v2/bench/big/blobs/{digest}")
    resp = conn.getresponse()
    if resp.status == 307:  # --redirect: fetch from SeaweedFS like a client would
        url = urllib.parse.urlsplit(resp.headers["Location"])
        resp.read()
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=3600)
        conn.request("GET", f"{url.path}?{url.query}")
        resp = conn.getresponse()
    assert resp.status == 200, resp.status
    hasher, total = hashlib.sha256(), 0
    while chunk := resp.read(4 * MiB):
        hasher.update(chunk)
        total += len(chunk)
    return time.monotonic() - started, total, f"sha256:{hasher.hexdigest()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=float, default=6.0, help="GiB")
    parser.add_argument("--redirect", action="store_true", help="pull via the presigned URL")
    args = parser.parse_args()
    block = os.urandom(4 * MiB)
    size = int(args.size * 1024) * MiB // len(block) * len(block)
    hasher = hashlib.sha256()
    for _ in range(size // len(block)):
        hasher.update(block)
    digest = f"sha256:{hasher.hexdigest()}"

    workdir = Path(tempfile.mkdtemp(prefix="s3-bigblob-"))
    weed = SeaweedFS(workdir / "weed")
    proc = None
    try:
        weed.start()
        bucket = weed.new_bucket()
        proc, port = start_fastreg(workdir, weed, bucket, args.redirect)
        idle = rss_kib(proc.pid)
        with Peak(proc.pid) as up:
            patch_s, put_s = push(port, size, block, digest)
        with Peak(proc.pid) as down:
            pull_s, got, got_digest = pull(port, digest)
        assert (got, got_digest) == (size, digest), "pulled bytes differ"
        mb = size / 1e6
        print(f"blob {size / 2**30:.2f} GiB, chunksize 10 MiB, SeaweedFS {weed.endpoint}")
        print(f"push  (PATCH stream)       {patch_s:7.1f} s  {mb / patch_s:7.1f} MB/s")
        print(f"commit (PUT: copy {size / 2**30:.1f} GiB) {put_s:7.1f} s  {mb / put_s:7.1f} MB/s")
        print(
            f"push total                 {patch_s + put_s:7.1f} s  {mb / (patch_s + put_s):7.1f} MB/s"
        )
        how = "redirect to S3" if args.redirect else "streamed by fastreg"
        print(f"pull ({how}) {pull_s:7.1f} s  {mb / pull_s:7.1f} MB/s (sha256 verified)")
        print(
            f"fastreg RSS: idle {idle / 1024:.0f} MiB, peak during push {up.peak / 1024:.0f} MiB, "
            f"peak during pull {down.peak / 1024:.0f} MiB"
        )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        weed.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
