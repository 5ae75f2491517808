"""Health checks and the debug server (`http.debug.addr`): `/debug/health`, `/debug/vars` and,
with `http.debug.prometheus.enabled`, the Prometheus metrics (`path`, default `/metrics`).

Checks follow Distribution's `health` package and `health.*` config: `storagedriver` calls the
driver's `healthy()`; `file` fails while the file exists; `http` fails unless the URI answers the
expected status; `tcp` fails unless the address accepts a connection. Each runs every `interval`
(default 10s); a check with a `threshold` fails after that many consecutive failures (else at the
first). While any check fails, `/debug/health` answers 503 with `{check: error}` and every
`/v2/` request answers 503 UNAVAILABLE (Distribution wraps its whole API the same way).

The debug server is a second aiohttp site in the same process; with `--workers` it shares its port
through SO_REUSEPORT like the API. Its handlers read the main application's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from fastreg.api.context import REGISTRY
from fastreg.config import Config
from fastreg.notify.service import NOTIFIER
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.server.health_settings import DEFAULT_INTERVAL, HTTPCheck, Timing
from fastreg.server.metrics import METRICS, Counter, Gauge, Metrics

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

    @property
    def failing(self) -> bool:
        return self.failures >= self.threshold

    async def run_once(self) -> None:
        try:
            await asyncio.wait_for(self.probe(), timeout=max(1.0, min(self.interval, 30.0)))
        except (TimeoutError, Exception) as exc:  # noqa: BLE001 - any failure is the answer
            was_failing = self.failing
            self.failures += 1
            self.error = str(exc) or type(exc).__name__
            if self.failing and not was_failing:
                log.error("health check failing", extra={"check": self.name, "error": self.error})
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
        return {c.name: c.error for c in self.checks if c.failing}


HEALTH: web.AppKey[Health] = web.AppKey("health", Health)
MAIN: web.AppKey[web.Application] = web.AppKey("main", web.Application)


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
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout or 1.0)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    return probe


# --- wiring into the API application ----------------------------------------------------------


def setup_health(app: web.Application, config: Config) -> None:
    """Register the configured checks; they run in the background while the app is up."""
    app[HEALTH] = Health(health_checks(config, app[REGISTRY].driver.healthy))
    if app[HEALTH].checks:
        app.cleanup_ctx.append(_run_checks)
    _register_metrics(app)


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
        failing = health.failing()
        if failing:
            raise RegistryError(ErrorCode.UNAVAILABLE, "health check failed", failing)
    return await handler(request)


def _register_metrics(app: web.Application) -> None:
    metrics = app[METRICS]

    def cache_stats() -> list[tuple[tuple[str, ...], float]]:
        out: list[tuple[tuple[str, ...], float]] = []
        for name, hits, misses in _caches(app):
            out += [((name, "hit"), float(hits)), ((name, "miss"), float(misses))]
        return out

    metrics.add(Gauge("registry_cache_requests", "Cache lookups by cache and result.",
                      ("cache", "result"), cache_stats))
    metrics.add(Gauge("registry_health_check_failing", "1 while a health check fails.",
                      ("check",), lambda: [((c.name,), float(c.failing))
                                           for c in app[HEALTH].checks]))

    def notify(field_name: str) -> Callable[[], list[tuple[tuple[str, ...], float]]]:
        def read() -> list[tuple[tuple[str, ...], float]]:
            notifier = app.get(NOTIFIER)
            if notifier is None:
                return []
            stats = notifier.stats()["endpoints"]
            return [((name, ), float(s[field_name])) for name, s in sorted(stats.items())]
        return read

    metrics.add(Gauge("registry_notifications_pending", "Events not yet delivered, by endpoint.",
                      ("endpoint",), notify("pending")))
    for name in ("delivered", "dropped", "filtered", "failures", "errors"):
        metrics.add(Gauge(f"registry_notifications_{name}", f"Events {name}, by endpoint "
                          "(failures and errors count delivery attempts).", ("endpoint",),
                          notify(name)))


def _caches(app: web.Application) -> list[tuple[str, int, int]]:
    registry = app[REGISTRY]
    out = [("manifests", registry.manifests.cache.hits, registry.manifests.cache.misses)]
    blob_cache = registry.blobs.cache
    hits, misses = getattr(blob_cache, "hits", None), getattr(blob_cache, "misses", None)
    if isinstance(hits, int) and isinstance(misses, int):
        out.append(("blobdescriptor", hits, misses))
    return out


# --- the debug server ------------------------------------------------------------------------


async def debug_health(request: web.Request) -> web.Response:
    failing = request.app[MAIN][HEALTH].failing()
    return web.json_response(failing, status=503 if failing else 200)


async def debug_vars(request: web.Request) -> web.Response:
    main = request.app[MAIN]
    metrics: Metrics = main[METRICS]
    notifier = main.get(NOTIFIER)
    body = {
        "pid": os.getpid(),
        "uptime_seconds": round(time.time() - metrics.started, 3),
        "requests": int(metrics.requests.total()),
        "requests_by_status": _by_status(metrics.requests),
        "requests_in_flight": sum(metrics.in_flight.values()),
        "uploads_in_flight": metrics.uploads_in_flight,
        "bytes_in": int(metrics.bytes_in.total()),
        "bytes_out": int(metrics.bytes_out.total()),
        "cache": {name: {"hits": h, "misses": m} for name, h, m in _caches(main)},
        "health": {c.name: {"failing": c.failing, "failures": c.failures, "error": c.error}
                   for c in main[HEALTH].checks},
        "notifications": notifier.stats() if notifier is not None else {"endpoints": {}},
    }
    return web.json_response(body)


def _by_status(counter: Counter) -> dict[str, int]:
    out: dict[str, int] = {}
    for labels, value in counter.values.items():
        out[labels[-1]] = out.get(labels[-1], 0) + int(value)
    return out


async def prometheus(request: web.Request) -> web.Response:
    text = request.app[MAIN][METRICS].render()
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


def debug_app(main: web.Application, config: Config) -> web.Application:
    """The debug application serving ``main``'s health, vars and metrics."""
    app = web.Application()
    app[MAIN] = main
    app.router.add_get("/debug/health", debug_health)
    app.router.add_get("/debug/vars", debug_vars)
    if config.http.debug.prometheus:
        app.router.add_get(config.http.debug.prometheus_path, prometheus)
    return app


async def start_debug_server(
    main: web.Application, config: Config, reuse_port: bool
) -> web.AppRunner | None:
    """Serve the debug application on `http.debug.addr`, if set; the caller cleans it up."""
    debug = config.http.debug
    if not debug.addr:
        return None
    host, port = debug.host, debug.port
    runner = web.AppRunner(debug_app(main, config), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("debug server listening", extra={"address": f"{host}:{port}"})
    return runner
