"""The `fastreg` command: `serve` (one process, or N workers sharing a port), `token-server`
(the built-in token issuer) and `version`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType

from aiohttp import web
from setproctitle import setproctitle

from fastreg import __version__
from fastreg.api.refusals import RegistryRunner
from fastreg.auth.middleware import check_auth
from fastreg.cli import commands
from fastreg.cli.limits import raise_open_files_limit
from fastreg.config import Config, ConfigError, load_config
from fastreg.server.allocator import tune_malloc
from fastreg.server.app import create_app
from fastreg.server.debug import start_debug_server
from fastreg.server.logs import setup_logging
from fastreg.server.metrics import multiprocess_mode, private_directory, worker_died
from fastreg.server.tracing import startup_warnings
from fastreg.storage.base import StorageError
from fastreg.storage.factory import UnknownDriver

log = logging.getLogger("fastreg")


def _load(path: str | None) -> Config:
    path = path or os.environ.get("REGISTRY_CONFIGURATION_PATH") or None
    config = load_config(path, os.environ)
    setup_logging(
        config.log.level, config.log.formatter, config.log.fields, not config.log.accesslog_disabled
    )
    for warning in config.warnings:
        log.warning(warning)
    return config


def _ssl_context(config: Config) -> ssl.SSLContext | None:
    """The TLS context of `http.tls`; a missing or unreadable file is a ConfigError naming its key
    and path (ssl's own error names neither)."""
    tls = config.http.tls
    if not tls.certificate:
        return None
    files = {"http.tls.certificate": tls.certificate, "http.tls.key": tls.key or tls.certificate}
    for key, path in files.items():
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(files["http.tls.certificate"], files["http.tls.key"])
    except ssl.SSLError as exc:
        raise ConfigError(
            f"http.tls.certificate/http.tls.key: {files['http.tls.certificate']}, "
            f"{files['http.tls.key']}: {exc.reason or exc}"
        ) from None
    return context


class BindError(Exception):
    """The listening address cannot be bound (in use, not ours, not local): one line, exit 1."""

    def __init__(self, address: str, exc: OSError) -> None:
        # asyncio's and uvloop's messages repeat the address: the errno's text says it once
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        super().__init__(f"cannot listen on {address}: {reason}")


def _addresses(config: Config) -> list[tuple[str, int]]:
    """The addresses this server listens on: `http.addr`, and `http.debug.addr` when set."""
    addresses = [config.http.host_port()]
    debug = config.http.debug
    if debug.addr:
        addresses.append((debug.host, debug.port))
    return addresses


def _check_free(host: str, port: int) -> None:
    """BindError unless nobody listens on ``host:port``.

    Workers share their port with SO_REUSEPORT, which also lets a second instance (same user)
    bind it silently and take half the connections. A probe bound without SO_REUSEPORT fails
    while any socket listens there, ours or not. SO_REUSEADDR as asyncio sets it, so connections
    of a previous run in TIME_WAIT do not count. Port 0 means a fresh port per worker: no probe.
    """
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise BindError(f"{host}:{port}", OSError(exc.errno, exc.strerror)) from None
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                raise BindError(f"{host}:{port}", exc) from None


async def _serve(config: Config, reuse_port: bool, ready: Callable[[], None] | None = None) -> None:
    host, port = config.http.host_port()
    app = create_app(config)
    runner = RegistryRunner(app, access_log=None, handler_cancellation=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    debug: web.AppRunner | None = None
    try:
        try:
            debug = await start_debug_server(app, config, reuse_port)
        except OSError as exc:
            raise BindError(config.http.debug.addr, exc) from None
        site = web.TCPSite(
            runner, host, port, reuse_port=reuse_port, backlog=2048, ssl_context=_ssl_context(config)
        )
        try:
            await site.start()
        except OSError as exc:
            raise BindError(f"{host}:{port}", exc) from None
        server = site._server
        bound = [s.getsockname() for s in getattr(server, "sockets", None) or []]
        log.info("listening", extra={"addresses": [f"{a[0]}:{a[1]}" for a in bound], "pid": os.getpid()})
        if ready is not None:
            ready()
        await stop.wait()
        log.info("shutting down", extra={"pid": os.getpid()})
    finally:
        if debug is not None:
            await debug.cleanup()
        await runner.cleanup()


def _run_worker(path: str | None, reuse_port: bool, ready: EventType, title: str) -> None:
    setproctitle(title)  # else ps shows `python -B -c from multiprocessing.spawn import ...`
    tune_malloc()  # a spawned worker starts with the allocator's defaults
    try:
        config = _load(path)
    except (ConfigError, OSError) as exc:  # changed on disk since the supervisor read it
        print(f"fastreg: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(_run_guarded(config, reuse_port, ready.set))


def _run_loop(config: Config, reuse_port: bool, ready: Callable[[], None] | None = None) -> None:
    try:
        import uvloop

        uvloop.run(_serve(config, reuse_port, ready))
    except ImportError:  # pragma: no cover - uvloop is a dependency; kept for odd platforms
        asyncio.run(_serve(config, reuse_port, ready))


def _run_guarded(config: Config, reuse_port: bool, ready: Callable[[], None] | None = None) -> int:
    """Serve until stopped; a problem of the configuration or the environment found on the way
    up is one line on stderr and an exit code (2: configuration, 1: environment), no traceback."""
    try:
        _run_loop(config, reuse_port, ready)
        return 0
    except UnknownDriver as exc:
        print(f"fastreg: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:  # a storage driver's parameters, checked when the driver is built
        print(f"fastreg: configuration error: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:  # the storage health check at start (wrong key, bucket, endpoint)
        print(f"fastreg: storage is not usable: {exc}", file=sys.stderr)
        return 1
    except BindError as exc:
        print(f"fastreg: {exc}", file=sys.stderr)
        return 1


# Distribution refuses to start without a configuration file: defaults alone would serve
# 0.0.0.0:5000 on /var/lib/registry with no auth, which nobody should get by forgetting an argument
NO_CONFIGURATION = (
    "fastreg: configuration path unspecified: give one as `fastreg serve CONFIG.yml` "
    "or in REGISTRY_CONFIGURATION_PATH"
)


def serve(path: str | None, workers: int) -> int:
    if not (path or os.environ.get("REGISTRY_CONFIGURATION_PATH")):
        print(NO_CONFIGURATION, file=sys.stderr)
        return 2
    try:
        config = _load(path)
        check_auth(config)  # the files auth names: a worker must not die on them in a loop
        _ssl_context(config)  # and the TLS files, named with their key
        addresses = _addresses(config)
    except (ConfigError, OSError) as exc:
        print(f"fastreg: configuration error: {exc}", file=sys.stderr)
        return 2
    for warning in startup_warnings(os.environ):  # once here; the workers do not repeat it
        log.warning(warning)
    raise_open_files_limit()  # before any worker starts: they inherit it
    # ps, top and `systemctl status` name each process by its role and address (setproctitle
    # rewrites the command line /proc/<pid>/cmdline shows), not by the interpreter's arguments
    addr = config.http.addr
    if workers <= 1:
        setproctitle(f"fastreg serve {addr}")
        if multiprocess_mode():  # PROMETHEUS_MULTIPROC_DIR came from outside: one of our own
            with private_directory():
                return _run_guarded(config, reuse_port=False)
        return _run_guarded(config, reuse_port=False)
    setproctitle(f"fastreg serve {addr} ({workers} workers)")
    try:
        for host, port in addresses:
            _check_free(host, port)
    except BindError as exc:
        print(f"fastreg: {exc}", file=sys.stderr)
        return 1
    # the workers' metrics files (server/metrics.py): fresh, private, removed when we stop
    with private_directory() as metrics_dir:
        return _supervise(path, workers, addr, metrics_dir)


def token_server(path: str | None, addr: str | None) -> int:
    from fastreg.auth import standalone  # jwt and cryptography: not in the registry's workers

    try:
        config = _load(path)
        app, host, port = standalone.token_app(config, addr)
        context = _ssl_context(config)
    except (ConfigError, OSError) as exc:
        print(f"fastreg: configuration error: {exc}", file=sys.stderr)
        return 2
    standalone.run(app, host, port, context)
    return 0


# a worker slot whose process dies this many times in a row before it listens is given up on:
# what stops it (a port taken, storage refused) will not go away by itself, and the supervisor's
# exit is what tells systemd. The pause before a restart grows with each failure.
START_ATTEMPTS = 3
RESTART_PAUSE = 0.5


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    ready: EventType  # set once the worker listens
    failures: int = 0  # starts in a row that died before listening


def _supervise(path: str | None, workers: int, addr: str, metrics_dir: str) -> int:
    """Run N worker processes on one port (SO_REUSEPORT); restart any that dies after it
    served, give up (stop the others, exit non-zero) on a slot whose worker keeps dying before
    it listens. A dead worker's live gauges leave ``metrics_dir`` (its counters stay)."""
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start(slot: int, failures: int = 0) -> _Worker:
        ready = ctx.Event()
        title = f"fastreg worker {slot + 1}/{workers} {addr}"  # a restart keeps its slot's title
        p = ctx.Process(target=_run_worker, args=(path, True, ready, title), daemon=False)
        p.start()
        return _Worker(p, ready, failures)

    procs = [start(slot) for slot in range(workers)]
    code = 0
    while not stopping and code == 0:
        time.sleep(0.2)
        for i, w in enumerate(procs):
            if w.ready.is_set():
                w.failures = 0
            if w.process.is_alive() or stopping:
                continue
            if w.process.pid is not None:
                worker_died(w.process.pid, metrics_dir)
            failures = 0 if w.ready.is_set() else w.failures + 1
            if failures >= START_ATTEMPTS:
                print(
                    f"fastreg: a worker failed to start {failures} times in a row "
                    f"(exit code {w.process.exitcode}); giving up",
                    file=sys.stderr,
                )
                code = w.process.exitcode or 1
                break
            log.warning(
                "worker exited, restarting",
                extra={"pid": w.process.pid, "exitcode": w.process.exitcode},
            )
            time.sleep(RESTART_PAUSE * max(failures, 1))
            procs[i] = start(i, failures)
    for w in procs:
        if w.process.is_alive() and w.process.pid is not None:
            os.kill(w.process.pid, signal.SIGTERM)
    for w in procs:
        w.process.join(timeout=30)
        if w.process.is_alive():
            w.process.kill()
    return code


def _processes(text: str) -> int:
    """``--workers``: 1 or more; 0 or a negative count is a usage error, not one process."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a number of processes (1 or more)")
    return count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastreg", description="A fast OCI registry.")
    parser.add_argument("--version", action="version", version=f"fastreg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="serve the registry API")
    p_serve.add_argument("config", nargs="?", help="Distribution-style config.yml")
    p_serve.add_argument(
        "--workers", type=_processes, default=1, help="processes sharing the port (1 or more)"
    )
    sub.add_parser("version", help="print the version")
    p_token = sub.add_parser("token-server", help="serve the built-in token issuer alone")
    p_token.add_argument("config", nargs="?", help="config.yml with auth.token.tokenserver")
    p_token.add_argument("--addr", help="host:port (default auth.token.tokenserver.addr, :5001)")
    commands.add_subcommands(sub)  # garbage-collect, migrate
    args = parser.parse_args(argv)
    tune_malloc()
    if args.command in commands.COMMANDS:
        return commands.run(args)
    if args.command == "version":
        print(f"fastreg {__version__}")
        return 0
    if args.command == "token-server":
        return token_server(args.config, args.addr)
    return serve(args.config, args.workers)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
