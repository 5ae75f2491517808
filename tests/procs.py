"""What every real test server (SeaweedFS, Azurite, fake-gcs-server, Swift, Redis) needs to be
started and stopped the same way: free ports, a child in its own session logging to a file,
the tail of that log for failures, a stop that takes the whole process group down, and a last
sweep at exit for servers a crashed session never stopped."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol


class Stoppable(Protocol):
    def stop(self) -> None: ...


LIVE: set[Stoppable] = set()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(LIVE):
        server.stop()


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1, held open together so none repeats."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def spawn(
    argv: Sequence[str], workdir: Path, log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in ``workdir`` in a session of its own, stdout and stderr to ``log_path``."""
    log = open(log_path, "ab")  # noqa: SIM115 - the child holds it; closed below
    try:
        return subprocess.Popen(
            list(argv), cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(env) if env is not None else None,
        )  # fmt: skip
    finally:
        log.close()


def log_tail(path: Path, tail: int) -> str:
    try:
        return path.read_text(errors="replace")[-tail:]
    except FileNotFoundError:
        return ""


def terminate(procs: Sequence[subprocess.Popen[bytes]], grace: float, timeout: float) -> None:
    """SIGTERM every running process group, wait ``grace``, then SIGKILL what is left."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)


def kill(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGKILL the process group at once, as a crash would."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
