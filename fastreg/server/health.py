"""Health checks (Distribution's `health` package and `health.*` config) and the gate they hold.

`storagedriver` calls the driver's `healthy()`; `file` fails while the file exists; `http` fails
unless the URI answers the expected status; `tcp` fails unless the address accepts a connection.
Each runs every `interval` (default 10s); a check with a `threshold` fails after that many
consecutive failures (else at the first). While any check fails, every `/v2/` request answers 503
UNAVAILABLE (`health_gate`: Distribution wraps its whole API the same way) and the debug server's
`/debug/health` answers 503 with `{check: error}` (server/debug.py).

On a pull-through cache each upstream is checked too (`upstream <host:port>`: its `/v2/` answers
200 or 401), reported in `/debug/health`'s body and `/debug/vars` but never gating: a mirror
whose upstream is down still serves what it has cached (the point of serving stale), so neither
its `/v2/` nor the status of `/debug/health` depends on an upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from fastreg.api.context import REGISTRY
from fastreg.config import Config
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.server.health_settings import DEFAULT_INTERVAL, HTTPCheck, Timing

log = logging.getLogger("fastreg.health")

CheckFn = Callable[[], Awaitable[None]]


class CheckFailed(Exception):
    pass


@dataclass(slots=True)
class Check:
    name: str
    probe: CheckFn
    interval: float = DEFAULT_INTERVAL
    threshold: int = 1
    failures: int = 0
    error: str = ""
    runs: int = 0
    gates: bool = True  # False: reported only (an upstream's reachability)

    @property
    def failing(self) -> bool:
        return self.failures >= self.threshold

    async def run_once(self) -> None:
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that arrives as
            # the probe ends, and the check loop then outlives the app's cleanup (it hung a test)
            async with asyncio.timeout(max(1.0, min(self.interval, 30.0))):
                await self.probe()
        except (TimeoutError, Exception) as exc:  # noqa: BLE001 - any failure is the answer
            was_failing = self.failing
            self.failures += 1
            self.error = str(exc) or type(exc).__name__
            if self.failing and not was_failing:
                log.log(logging.ERROR if self.gates else logging.WARNING, "health check failing",
                        extra={"check": self.name, "error": self.error})
        else:
            if self.failing:
                log.info("health check recovered", extra={"check": self.name})
            self.failures = 0
            self.error = ""
        self.runs += 1


@dataclass(slots=True)
class Health:
    checks: list[Check] = field(default_factory=list)

    def failing(self) -> dict[str, str]:
        """The failing checks that gate the API (and the status of `/debug/health`)."""
        return {c.name: c.error for c in self.checks if c.failing and c.gates}

    def report(self) -> dict[str, str]:
        """Every failing check, the reported-only ones included."""
        return {c.name: c.error for c in self.checks if c.failing}


HEALTH: web.AppKey[Health] = web.AppKey("health", Health)


# --- checks from the `health` section (parsed at load: fastreg.server.health_settings) ----------------


def health_checks(config: Config, storage_probe: CheckFn) -> list[Check]:
    section = config.health
    checks: list[Check] = []

    def add(name: str, probe: CheckFn, timing: Timing) -> None:
        checks.append(Check(name, probe, timing.interval, timing.threshold))

    if section.storagedriver is not None:
        add(f"storagedriver_{config.storage.driver}", storage_probe, section.storagedriver)
    for file in section.files:
        add(file.file, _file_probe(file.file), file.timing)
    for http in section.http:
        add(http.uri, _http_probe(http), http.timing)
    for tcp in section.tcp:
        add(tcp.addr, _tcp_probe(tcp.host, tcp.port, tcp.timeout), tcp.timing)
    return checks


def _file_probe(path: str) -> CheckFn:
    async def probe() -> None:
        exists = await asyncio.get_running_loop().run_in_executor(None, os.path.exists, path)
        if exists:
            raise CheckFailed("file exists")

    return probe


def _http_probe(check: HTTPCheck) -> CheckFn:
    async def probe() -> None:
        client_timeout = aiohttp.ClientTimeout(total=check.timeout)
        async with (
            aiohttp.ClientSession(timeout=client_timeout, trust_env=False) as session,
            session.head(check.uri, headers=list(check.headers), allow_redirects=False) as resp,
        ):
            if resp.status != check.statuscode:
                raise CheckFailed(f"downstream service returned unexpected status: {resp.status}")

    return probe


def _tcp_probe(host: str, port: int, timeout: float) -> CheckFn:
    async def probe() -> None:
        async with asyncio.timeout(timeout or 1.0):
            _, writer = await asyncio.open_connection(host, port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    return probe


# --- wiring into the API application ----------------------------------------------------------


def setup_health(app: web.Application, config: Config) -> None:
    """Register the configured checks; they run in the background while the app is up."""
    registry = app[REGISTRY]
    checks = health_checks(config, registry.driver.healthy)
    checks += [
        Check(f"upstream {m.stats.upstream}", m.client.ping, gates=False)
        for m in registry.mirrors.values()
    ]
    app[HEALTH] = Health(checks)
    if app[HEALTH].checks:
        app.cleanup_ctx.append(_run_checks)


async def _run_checks(app: web.Application) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(_check_forever(c)) for c in app[HEALTH].checks]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _check_forever(check: Check) -> None:
    while True:
        await check.run_once()
        await asyncio.sleep(check.interval)


@web.middleware
async def health_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """503 UNAVAILABLE for every API request while a health check fails."""
    health = request.app.get(HEALTH)
    if health is not None and health.checks:
        failing = health.failing()  # gating checks only: an upstream never closes the mirror
        if failing:
            raise RegistryError(ErrorCode.UNAVAILABLE, "health check failed", failing)
    return await handler(request)
