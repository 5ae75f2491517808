"""The maintenance subcommands: `garbage-collect` and `migrate` (wired into `fastreg.cli`).

Both read Distribution-style config files, open the configured storage driver, and report on
stdout in plain lines; a progress bar is drawn on stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from fastreg.cli.progress import ProgressBar
from fastreg.config import Config, ConfigError, load_config, parse_duration
from fastreg.registry.gc import GCError, GCOptions, collect
from fastreg.registry.migrate import MigrateError, migrate
from fastreg.registry.roots import NotARegistry, check_destination, check_source
from fastreg.server.logs import setup_logging
from fastreg.storage.base import StorageError
from fastreg.storage.factory import UnknownDriver, create_driver

COMMANDS = ("garbage-collect", "migrate")


def add_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gc = sub.add_parser(
        "garbage-collect",
        help="delete blobs (and with -m untagged manifests) nothing references",
        description="Mark and sweep, compatible with Distribution's garbage-collect. Offline by "
        "default (stop pushes first); --online runs beside a serving registry.",
    )
    gc.add_argument("config", help="Distribution-style config.yml")
    gc.add_argument("-d", "--dry-run", action="store_true", help="report, delete nothing")
    gc.add_argument(
        "-m",
        "--delete-untagged",
        action="store_true",
        help="also delete manifests no tag reaches (their referrers go with them); offline only",
    )
    gc.add_argument(
        "--online", action="store_true", help="safe while pushes continue; spares young blobs"
    )
    gc.add_argument(
        "--delay",
        help="with --online: spare blobs younger than this Go duration "
        "(default storage.maintenance.gc.delay, else 1h)",
    )
    gc.add_argument("-q", "--quiet", action="store_true", help="no per-digest 'marking' lines")
    mig = sub.add_parser(
        "migrate",
        help="copy a registry's storage to another (resumable, verified, incremental)",
        description="Copy blobs (digest-verified) and repositories from SRC to DST; run it again "
        "to copy only what changed. The source may keep serving.",
    )
    mig.add_argument("src", help="config.yml of the source")
    mig.add_argument("dst", help="config.yml of the destination")


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "garbage-collect":
            return _garbage_collect(args)
        return _migrate(args)
    except (ConfigError, OSError, UnknownDriver) as exc:
        print(f"fastreg: {exc}", file=sys.stderr)
        return 2
    except NotARegistry as exc:  # a wrong root: nothing done, the root named (roots.py)
        print(f"fastreg: {args.command}: {exc}", file=sys.stderr)
        return 1
    except (GCError, MigrateError, StorageError) as exc:
        print(f"fastreg: {args.command} failed: {exc}", file=sys.stderr)
        return 1


def _load(path: str) -> Config:
    config = load_config(path, os.environ)
    setup_logging(
        "warn" if config.log.level == "info" else config.log.level,
        config.log.formatter,
        config.log.fields,
    )
    return config


def _garbage_collect(args: argparse.Namespace) -> int:
    config = _load(args.config)
    delay: float | None = None
    if args.online:
        delay = config.storage.gc.delay
        if args.delay is not None:
            delay = parse_duration(args.delay)
    options = GCOptions(
        dry_run=args.dry_run,
        delete_untagged=args.delete_untagged,
        delay=delay,
        verbose=not args.quiet,
    )
    driver = create_driver(config.storage.driver, config.storage.params)

    async def go() -> str:
        try:
            await check_source(driver)
            with ProgressBar() as progress:
                report = await collect(driver, options, progress.print, progress)
            return report.summary(options)
        finally:
            await driver.close()

    print(asyncio.run(go()))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    src_config, dst_config = _load(args.src), _load(args.dst)
    src = create_driver(src_config.storage.driver, src_config.storage.params)
    dst = create_driver(dst_config.storage.driver, dst_config.storage.params)

    async def go() -> str:
        try:
            await check_source(src, "source")
            await check_destination(dst)
            with ProgressBar() as progress:
                report = await migrate(src, dst, progress, progress.print)
            return report.summary()
        finally:
            await src.close()
            await dst.close()

    print(asyncio.run(go()))
    return 0
