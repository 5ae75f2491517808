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
from typing import Any

from aiohttp import web

from fastreg.api.context import REGISTRY
from fastreg.config import Config
from fastreg.notify.service import NOTIFIER
from fastreg.registry.proxy.stats import ARTIFACTS
from fastreg.server.health import HEALTH
from fastreg.server.metrics import CONTENT_TYPE, METRICS, sync_forever
from fastreg.server.tracing import tracing_vars

log = logging.getLogger("fastreg.health")  # the name it always had: log lines unchanged

MAIN: web.AppKey[web.Application] = web.AppKey("main", web.Application)

Reading = list[tuple[tuple[str, ...], float]]


def setup_debug_metrics(app: web.Application) -> None:
    """What the metrics read off the other parts of the application (server/metrics.py: the
    caches', health checks' and notification endpoints' own counts, synced)."""
    metrics = app[METRICS]

    def blob_cache() -> Reading:
        for name, hits, misses in _caches(app):
            if name == "blobdescriptor":
                return [(("Request",), hits + misses), (("Hit",), hits), (("Miss",), misses)]
        return []

    def caches() -> Reading:
        return [((name, result), float(n)) for name, hits, misses in _caches(app)
                for result, n in (("hit", hits), ("miss", misses))]

    def failing() -> Reading:
        return [((c.name,), float(c.failing)) for c in app[HEALTH].checks]

    def endpoints() -> list[tuple[str, Any]]:
        notifier = app.get(NOTIFIER)
        return [] if notifier is None else [(c.config.name, c.queue) for c in notifier.chains]

    def events() -> Reading:
        return [((kind, name), float(n)) for name, q in endpoints() for kind, n in (
            ("Events", q.stats.queued), ("Successes", q.stats.delivered),
            ("Failures", q.stats.failed_events), ("Errors", q.stats.errored_events))]

    def dropped() -> Reading:
        return [((kind, name), float(n)) for name, q in endpoints()
                for kind, n in (("Dropped", q.stats.dropped), ("Filtered", q.stats.filtered))]

    def statuses() -> Reading:
        return [((code, name), float(n)) for name, q in endpoints()
                for code, n in q.stats.statuses.items()]

    def pending() -> Reading:
        return [((name,), float(q.pending)) for name, q in endpoints()]

    metrics.mirror(metrics.cache, blob_cache)
    metrics.mirror(metrics.fastreg_cache, caches)
    metrics.mirror(metrics.health_failing, failing, gauge=True)
    metrics.mirror(metrics.events, events)
    metrics.mirror(metrics.notify_other, dropped)
    metrics.mirror(metrics.statuses, statuses)
    metrics.mirror(metrics.pending, pending, gauge=True)
    mirrors = list(app[REGISTRY].mirrors.values())
    if mirrors:
        for artifact in ARTIFACTS:  # present from the start, as Distribution's are
            for children in metrics.proxy.values():
                children(artifact).inc(0)
        for kind in metrics.proxy:
            # Distribution's registry_proxy_* have no upstream label: the sum over upstreams
            def tally(kind: str = kind) -> Reading:
                return [((a,), float(sum(m.stats.count(a, kind) for m in mirrors)))
                        for a in ARTIFACTS]

            def by_upstream(kind: str = kind) -> Reading:
                return [((a, m.stats.upstream), float(m.stats.count(a, kind)))
                        for m in mirrors for a in ARTIFACTS]

            metrics.mirror(metrics.proxy[kind], tally)
            metrics.mirror(metrics.proxy_upstream[kind], by_upstream)
        metrics.mirror(metrics.proxy_errors,
                       lambda: [((m.stats.upstream,), m.stats.upstream_errors) for m in mirrors])
    app.cleanup_ctx.append(sync_forever)


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
    health = request.app[MAIN][HEALTH]
    return web.json_response(health.report(), status=503 if health.failing() else 200)


async def debug_vars(request: web.Request) -> web.Response:
    """This process's state; the request counts are over all workers (as /metrics has them)."""
    main = request.app[MAIN]
    metrics = main[METRICS]
    notifier = main.get(NOTIFIER)
    body = {
        "pid": os.getpid(),
        "uptime_seconds": round(time.time() - metrics.started, 3),
        **metrics.totals(),
        "cache": {name: {"hits": h, "misses": m} for name, h, m in _caches(main)},
        "health": {c.name: {"failing": c.failing, "failures": c.failures, "error": c.error}
                   for c in main[HEALTH].checks},
        "notifications": notifier.stats() if notifier is not None else {"endpoints": {}},
        "tracing": tracing_vars(main),
    }
    return web.json_response(body)


async def prometheus(request: web.Request) -> web.Response:
    body = request.app[MAIN][METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE,
                                            "X-Content-Type-Options": "nosniff"})


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
