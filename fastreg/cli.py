"""The `fastreg` command: `serve` (one process, or N workers sharing a port), `token-server`
(the built-in token issuer) and `version`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import signal
import ssl
import sys
import time
from collections.abc import Sequence

from aiohttp import web

from fastreg import __version__, commands
from fastreg.allocator import tune_malloc
from fastreg.app import create_app
from fastreg.auth.middleware import check_auth
from fastreg.config import Config, ConfigError, load_config
from fastreg.debug import start_debug_server, validate
from fastreg.limits import raise_open_files_limit
from fastreg.logs import setup_logging
from fastreg.storage.base import StorageError
from fastreg.storage.factory import UnknownDriver

log = logging.getLogger("fastreg")


def _load(path: str | None) -> Config:
    path = path or os.environ.get("REGISTRY_CONFIGURATION_PATH") or None
    config = load_config(path, os.environ)
    setup_logging(config.log.level, config.log.formatter, config.log.fields)
    for warning in config.warnings:
        log.warning(warning)
    return config


def _ssl_context(config: Config) -> ssl.SSLContext | None:
    tls = config.http.tls
    if not tls.get("certificate"):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls["certificate"]), str(tls.get("key") or tls["certificate"]))
    return context


async def _serve(config: Config, reuse_port: bool) -> None:
    host, port = config.http.host_port()
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    debug: web.AppRunner | None = None
    try:
        debug = await start_debug_server(app, config, reuse_port)
        site = web.TCPSite(
            runner, host, port, reuse_port=reuse_port, backlog=2048, ssl_context=_ssl_context(config)
        )
        await site.start()
        server = site._server
        bound = [s.getsockname() for s in getattr(server, "sockets", None) or []]
        log.info("listening", extra={"addresses": [f"{a[0]}:{a[1]}" for a in bound], "pid": os.getpid()})
        await stop.wait()
        log.info("shutting down", extra={"pid": os.getpid()})
    finally:
        if debug is not None:
            await debug.cleanup()
        await runner.cleanup()


def _run_worker(path: str | None, reuse_port: bool) -> None:
    tune_malloc()  # a spawned worker starts with the allocator's defaults
    config = _load(path)
    _run_loop(config, reuse_port)


def _run_loop(config: Config, reuse_port: bool) -> None:
    try:
        import uvloop

        uvloop.run(_serve(config, reuse_port))
    except ImportError:  # pragma: no cover - uvloop is a dependency; kept for odd platforms
        asyncio.run(_serve(config, reuse_port))


def serve(path: str | None, workers: int) -> int:
    try:
        config = _load(path)
        validate(config)  # the sections read by the app's plugins, before any worker starts
        check_auth(config)  # the auth files too: a worker must not die on them in a loop
    except (ConfigError, OSError) as exc:
        print(f"fastreg: configuration error: {exc}", file=sys.stderr)
        return 2
    raise_open_files_limit()  # before any worker starts: they inherit it
    try:
        if workers <= 1:
            _run_loop(config, reuse_port=False)
            return 0
        return _supervise(path, workers)
    except UnknownDriver as exc:
        print(f"fastreg: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:  # a storage driver's parameters, checked when the driver is built
        print(f"fastreg: configuration error: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:  # the storage health check at start (wrong key, bucket, endpoint)
        print(f"fastreg: storage is not usable: {exc}", file=sys.stderr)
        return 1


def token_server(path: str | None, addr: str | None) -> int:
    from fastreg.auth import standalone  # jwt and cryptography: not in the registry's workers

    try:
        config = _load(path)
        app, host, port = standalone.token_app(config, addr)
    except (ConfigError, OSError) as exc:
        print(f"fastreg: configuration error: {exc}", file=sys.stderr)
        return 2
    standalone.run(app, host, port, _ssl_context(config))
    return 0


def _supervise(path: str | None, workers: int) -> int:
    """Run N worker processes on one port (SO_REUSEPORT); restart any that dies."""
    ctx = multiprocessing.get_context("spawn")
    procs: list[multiprocessing.process.BaseProcess] = []
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start() -> multiprocessing.process.BaseProcess:
        p = ctx.Process(target=_run_worker, args=(path, True), daemon=False)
        p.start()
        return p

    procs = [start() for _ in range(workers)]
    while not stopping:
        time.sleep(0.2)
        for i, p in enumerate(procs):
            if not p.is_alive() and not stopping:
                log.warning("worker exited, restarting", extra={"pid": p.pid, "exitcode": p.exitcode})
                time.sleep(0.5)
                procs[i] = start()
    for p in procs:
        if p.is_alive() and p.pid is not None:
            os.kill(p.pid, signal.SIGTERM)
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastreg", description="A fast OCI registry.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="serve the registry API")
    p_serve.add_argument("config", nargs="?", help="Distribution-style config.yml")
    p_serve.add_argument("--workers", type=int, default=1, help="processes sharing the port")
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
