"""Resident memory of the registry while one large blob streams in (and the push rate).

Starts fastreg (and, with --compare, Debian's docker-registry) on a temporary filesystem root,
pushes one blob of --size GiB with a monolithic PUT streamed from a cheap client (one random MiB
repeated; its digest computed ahead of time), and prints the server's RSS before, its peak during
the upload (sampled every 50 ms from /proc) and after, plus the throughput. Figures are printed,
never asserted.

    python benchmarks/upload_rss.py --size 4 [--compare]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MiB = 1024 * 1024
REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    """RSS of the process and its children (a --workers parent has none serving)."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def start(kind: str, root: Path, port: int) -> subprocess.Popen[bytes]:
    cfg = root.parent / f"{kind}.yml"
    cfg.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    if kind == "fastreg":
        argv = [sys.executable, "-m", "fastreg", "serve", str(cfg)]
    else:
        argv = [shutil.which("docker-registry") or "docker-registry", "serve", str(cfg)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/v2/")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{kind} did not start")


def push(port: int, block: bytes, count: int, digest: str) -> float:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v2/bench/rss/blobs/uploads/")
    r = c.getresponse()
    r.read()
    location = r.getheader("Location") or ""
    path = location[location.index("/v2/"):]
    sep = "&" if "?" in path else "?"
    sock = socket.create_connection(("127.0.0.1", port))
    head = (f"PUT {path}{sep}digest={digest} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Length: {len(block) * count}\r\nContent-Type: application/octet-stream\r\n\r\n")
    started = time.perf_counter()
    sock.sendall(head.encode())
    for _ in range(count):
        sock.sendall(block)
    reply = sock.recv(65536).decode(errors="replace")
    elapsed = time.perf_counter() - started
    sock.close()
    if " 201 " not in reply.split("\r\n", 1)[0]:
        raise SystemExit(f"push failed: {reply[:300]}")
    return elapsed


def measure(kind: str, size_gib: int, block: bytes, digest: str) -> None:
    with tempfile.TemporaryDirectory(prefix=f"rss-{kind}-", dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp) / "root"
        port = free_port()
        proc = start(kind, root, port)
        try:
            before = rss_kib(proc.pid)
            peak = [before]
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], rss_kib(proc.pid))
                    time.sleep(0.05)

            t = threading.Thread(target=sample, daemon=True)
            t.start()
            elapsed = push(port, block, size_gib * 1024, digest)
            done.set()
            t.join()
            after = rss_kib(proc.pid)
            print(f"{kind:13} {size_gib} GiB  RSS before {before / 1024:7.1f} MiB  "
                  f"peak {peak[0] / 1024:7.1f} MiB  after {after / 1024:7.1f} MiB  "
                  f"{size_gib * 1024 / elapsed:7.1f} MiB/s", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4, help="GiB to push")
    parser.add_argument("--compare", action="store_true", help="also measure docker-registry")
    args = parser.parse_args()
    block = os.urandom(MiB)
    h = hashlib.sha256()
    for _ in range(args.size * 1024):
        h.update(block)
    digest = "sha256:" + h.hexdigest()
    measure("fastreg", args.size, block, digest)
    if args.compare:
        measure("distribution", args.size, block, digest)


if __name__ == "__main__":
    main()
