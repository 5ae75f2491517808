"""The debug server (`http.debug.addr`): `/debug/health` (the checks of server/health.py),
`/debug/vars` and, with `http.debug.prometheus.enabled`, the Prometheus metrics (`path`, default
`/metrics`).

The debug server is a second aiohttp site in the same process; with `--workers` it shares its port
through SO_REUSEPORT like the API. Its handlers read the main application's state.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from aiohttp import web

from fastreg.api.context import REGISTRY
from fastreg.config import Config
from fastreg.notify.service import NOTIFIER
from fastreg.server.health import HEALTH
from fastreg.server.metrics import METRICS, Counter, Gauge, Metrics
from fastreg.server.tracing import tracing_vars

log = logging.getLogger("fastreg.health")  # the name it always had: log lines unchanged

MAIN: web.AppKey[web.Application] = web.AppKey("main", web.Application)


def setup_debug_metrics(app: web.Application) -> None:
    """The gauges the debug server and `/metrics` read off the main application."""
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
        "tracing": tracing_vars(main),
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
