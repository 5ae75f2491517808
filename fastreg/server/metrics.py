"""The registry's Prometheus metrics: Distribution's names, types and labels, one sum over every
worker, through prometheus_client (the library of the field; nothing is rendered by hand).

Names, as Distribution 2.8 exports them (its `registry/handlers/app.go` instruments each route
with docker/go-metrics' default HTTP metrics; `registry/storage/driver/base/base.go`,
`registry/storage/cache/cachedblobdescriptorstore.go`, `notifications/metrics.go` and, in 3.x,
`registry/proxy/proxymetrics.go`), so that a dashboard built for Distribution works unchanged:

- `registry_http_requests_total{code,handler,method}`, `registry_http_request_duration_seconds
  {handler,method}`, `registry_http_request_size_bytes{handler}` and
  `registry_http_response_size_bytes{handler}` (histograms, go-metrics' buckets),
  `registry_http_in_flight_requests{handler}`. ``handler`` is Distribution's route name with "-"
  made "_" (`base`, `blob`, `blob_upload`, `blob_upload_chunk`, `manifest`, `tags`, `catalog`;
  `referrers`, a route Distribution lacks, keeps its name); every request that matched a route
  carries it, refusals included (401, 405, 503: Distribution's instrumentation wraps its
  dispatcher, auth and all). ``method`` is lower case, as client_golang's promhttp writes it
  (`get`), one outside the standard ones is `unknown` (a bound on series a client can create).
  A path that matches no route is not counted there (Distribution's router answers it
  outside the instrumented handlers), only in `fastreg_http_unrouted_requests_total`.
  Request size is promhttp's approximation (URL, method, protocol, headers, Host) plus the body
  bytes received, so a chunked upload counts its body too.
- `registry_storage_action_seconds{driver,action}` for the calls Distribution times (`GetContent`,
  `PutContent`, `Stat`, `List`, `Move`, `Delete`, `URLFor`; `publish`, the move of an upload into
  place, is `Move`; driver `s3aws` for `s3`); client_golang's default buckets.
- `registry_storage_cache_total{type="Request"|"Hit"|"Miss"}`: the blob descriptor cache.
- `registry_notifications_events_total{type="Events"|"Successes"|"Failures"|"Errors",endpoint}`,
  `registry_notifications_status_total{code="200 OK",endpoint}`,
  `registry_notifications_pending_total{endpoint}` (a gauge: go-metrics names it so).
- `registry_proxy_{requests,hits,misses,pulled_bytes,pushed_bytes}_total{type="blob"|"manifest"}`.

fastreg's own metrics stand beside them under `fastreg_`: storage calls Distribution does not
time and failed calls, the manifest cache, health checks, dropped and filtered notifications,
the mirror per upstream (with its upstream errors).

Workers. Each worker is a process; prometheus_client's multiprocess mode keeps each process's
values in its own mmap files in `PROMETHEUS_MULTIPROC_DIR`, and a scrape on any worker reads all
of them (`MultiProcessCollector`): counters and histograms are summed over every process that
ever wrote, a dead worker's included, so a restart never makes a counter go back. The supervisor
(`fastreg.cli.main`) owns the directory: fresh and private before the first worker starts
(`private_directory`), removed at exit; when a worker dies it calls `mark_process_dead`, which
drops only that process's live gauges (`livesum`: in-flight requests and pending events,
`livemax`: a failing check), never counters. The mode is what prometheus_client chose when it
was imported (the variable set at process start, as the supervisor's workers have it); without
it (one process, `--workers 1`, tests building several apps in one process) each app has its own
`CollectorRegistry` and nothing is shared between apps or left behind in the environment.

`process_*`: per worker, with a `pid` label, read at scrape time from /proc by prometheus_client's
`ProcessCollector` for each live worker (those with live gauge files: `mark_process_dead`
removes a dead one's). Per worker rather than summed because the limits are per process
(`process_open_fds` against `process_max_fds` means something only for one process), a worker
that grows shows itself, and a summed `process_cpu_seconds_total` would go back when a worker is
replaced; `sum without (pid)` gives the totals. One process exports them without the label, as
Distribution does.

Component counters (the caches', the notification endpoints', the mirror's) are plain integers
their owners keep (so `registry/` and `notify/` import no metrics code, and a cache lookup costs
no file write); every `SYNC_SECONDS` each worker adds what they gained since into its Prometheus
counters, and the worker answering a scrape does so first. A worker killed with SIGKILL loses at
most that much of those counts; nothing is counted twice and nothing goes back.
`registry_http_requests_total` and the storage metrics are written as they happen (an mmap
write; the labelled children are looked up once), so the request counts are exact whatever
happens to a worker; the HTTP histograms are gathered in memory and written at each sync
(`_Batch`), and the in-flight gauge is sampled then too: both to cut the cost per request
(benchmarks/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import glob
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.samples import Sample

from fastreg.api.context import RESOLVED, Resolved
from fastreg.api.middleware import received_bytes, sent_bytes

# Distribution exports no `_created` series, nor does the multiprocess mode: one output for both
disable_created_metrics()  # type: ignore[no-untyped-call]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SYNC_SECONDS = 1.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# docker/go-metrics' NewDefaultHttpMetrics, and client_golang's DefBuckets for its timers
HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60)
SIZE_BUCKETS = tuple(1024.0 * 2**i for i in range(22))  # 1 KiB to 2 GiB
STORAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# fastreg's route names (api/routes.py) -> Distribution's (registry/api/v2/routes.go, "-" -> "_")
HANDLERS = {
    "base": "base", "catalog": "catalog", "tags": "tags", "manifest": "manifest",
    "upload_start": "blob_upload", "upload": "blob_upload_chunk", "blob": "blob",
    "referrers": "referrers",
}
UPLOAD_HANDLERS = frozenset({"blob_upload", "blob_upload_chunk"})
METHODS = {m: m.lower() for m in
           ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE")}
# the driver calls Distribution times, by its names; the others go to fastreg_storage_*
STORAGE_ACTIONS = {
    "get_content": "GetContent", "put_content": "PutContent", "stat": "Stat", "list": "List",
    "move": "Move", "publish": "Move", "delete": "Delete", "url_for": "URLFor",
}
DRIVERS = {"s3": "s3aws"}  # Distribution's name for its S3 driver


def multiprocess_mode() -> bool:
    """Whether prometheus_client keeps this process's values in the multiprocess files."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


@contextlib.contextmanager
def private_directory() -> Iterator[str]:
    """A fresh `PROMETHEUS_MULTIPROC_DIR` for the workers about to be started, removed at the
    end. Whatever the variable held before (a shared directory would sum another service's
    files into ours) is replaced for the children, and restored for this process."""
    directory = tempfile.mkdtemp(prefix="fastreg-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(directory, ignore_errors=True)


def worker_died(pid: int, directory: str) -> None:
    """Forget a dead worker's live gauges; its counters and histograms stay in the sum."""
    mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


class _Children:
    """A labelled metric's children, each looked up once: `labels()` costs more than a write."""

    __slots__ = ("children", "metric")

    def __init__(self, metric: MetricWrapperBase) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self.children.get(labels)
        if child is None:
            child = self.children[labels] = self.metric.labels(*labels)
        return child


Reading = Iterable[tuple[tuple[str, ...], float]]


@dataclass(slots=True)
class _Mirror:
    """A Prometheus counter (or gauge) following a value another part keeps."""

    children: _Children
    read: Callable[[], Reading]
    gauge: bool = False
    last: dict[tuple[str, ...], float] = field(default_factory=dict)

    def sync(self) -> None:
        for labels, value in self.read():
            if self.gauge:
                self.children(*labels).set(value)
                continue
            child = self.children(*labels)  # exported from its first look, at 0
            gained = value - self.last.get(labels, 0.0)
            if gained > 0:  # an owner that restarts its count never takes ours back
                child.inc(gained)
            self.last[labels] = value


class _Batch:
    """A histogram child's observations gathered in this process and written to it at each sync:
    one bucket increment and a sum in memory per request instead of two file writes (measured
    in benchmarks/RESULTS.md: the three HTTP histograms were most of the cost prometheus_client's
    multiprocess mode adds to a small request). It writes into the child's own values (its
    `_sum` and `_buckets`, prometheus_client's since 2018), so the exposition is the library's.
    A worker killed with SIGKILL loses what it gathered since its last sync."""

    __slots__ = ("bounds", "child", "counts", "total")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.bounds: list[float] = list(child._upper_bounds)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # the first bound >= value
        self.total += value

    def flush(self) -> None:
        if not any(self.counts):
            return
        self.child._sum.inc(self.total)
        for i, n in enumerate(self.counts):
            if n:
                self.child._buckets[i].inc(n)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0


class _WorkerProcesses:
    """`process_*` of every live worker, labelled with its pid (see the module's docstring)."""

    LIVE = re.compile(r"gauge_live[a-z]+_(\d+)\.db$")

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._collectors: dict[int, ProcessCollector] = {}

    def pids(self) -> list[int]:
        found = {int(m.group(1)) for f in glob.glob(os.path.join(self.directory, "gauge_live*.db"))
                 if (m := self.LIVE.search(f))}
        for gone in set(self._collectors) - found:
            del self._collectors[gone]
        return sorted(found)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for pid in self.pids():
            collector = self._collectors.get(pid)
            if collector is None:
                collector = self._collectors[pid] = ProcessCollector(
                    pid=lambda pid=pid: pid, registry=None)  # type: ignore[misc]
            for family in collector.collect():
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type))
                for s in family.samples:
                    merged.samples.append(Sample(s.name, {**s.labels, "pid": str(pid)}, s.value))
        yield from families.values()


class Metrics:
    """One application's metrics (the Application's `METRICS`); see the module's docstring."""

    def __init__(self) -> None:
        self.started = time.time()
        self.multiprocess = multiprocess_mode()
        self.directory = os.environ.get(MULTIPROC_ENV) if self.multiprocess else None
        if self.multiprocess and not (self.directory and os.path.isdir(self.directory)):
            raise RuntimeError(f"{MULTIPROC_ENV} names no directory: {self.directory!r}")
        self.registry = registry = CollectorRegistry(auto_describe=False)
        self.flight = dict.fromkeys(HANDLERS.values(), 0)  # this process's requests in flight
        self.uploads_answered = 0  # and its upload requests answered (the allocator's look)
        self._mirrors: list[_Mirror] = []
        # a route's histograms for one method, looked up once: (duration, request, response size)
        self._route: dict[tuple[str, str], tuple[_Batch, _Batch, _Batch]] = {}
        self._batches: list[_Batch] = []

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> _Children:
            return _Children(Counter(name, doc, labels, registry=registry))

        def histogram(name: str, doc: str, labels: tuple[str, ...],
                      buckets: tuple[float, ...]) -> _Children:
            return _Children(Histogram(name, doc, labels, buckets=buckets, registry=registry))

        def gauge(name: str, doc: str, labels: tuple[str, ...], mode: str) -> _Children:
            return _Children(Gauge(name, doc, labels, multiprocess_mode=mode,  # type: ignore[arg-type]
                                   registry=registry))

        self.requests = counter("registry_http_requests_total",
                                "Total number of HTTP requests made.", ("code", "handler", "method"))
        self.duration = histogram("registry_http_request_duration_seconds",
                                  "The HTTP request latencies in seconds.", ("handler", "method"),
                                  HTTP_DURATION_BUCKETS)
        self.request_size = histogram("registry_http_request_size_bytes",
                                      "The HTTP request sizes in bytes.", ("handler",), SIZE_BUCKETS)
        self.response_size = histogram("registry_http_response_size_bytes",
                                       "The HTTP response sizes in bytes.", ("handler",),
                                       SIZE_BUCKETS)
        self.in_flight = gauge("registry_http_in_flight_requests", "The in-flight HTTP requests",
                               ("handler",), "livesum")
        self.unrouted = counter("fastreg_http_unrouted_requests_total",
                                "Requests whose path matches no API route (not in registry_http_*).",
                                ("code", "method"))
        self.storage = histogram("registry_storage_action_seconds",
                                 "The number of seconds that the storage action takes",
                                 ("driver", "action"), STORAGE_BUCKETS)
        self.storage_other = histogram("fastreg_storage_action_seconds",
                                       "Storage driver calls Distribution does not time, by action.",
                                       ("driver", "action"), STORAGE_BUCKETS)
        self.storage_errors = counter("fastreg_storage_errors_total",
                                      "Storage driver calls that failed (a missing path is no "
                                      "failure), by fastreg's action name.", ("driver", "action"))
        self.cache = counter("registry_storage_cache_total", "The number of cache request received",
                             ("type",))
        self.fastreg_cache = counter("fastreg_cache_requests_total",
                                     "Cache lookups by cache and result.", ("cache", "result"))
        self.health_failing = gauge("fastreg_health_check_failing",
                                    "1 while a health check fails (in any worker).", ("check",),
                                    "livemax")
        self.events = counter("registry_notifications_events_total", "The number of total events",
                              ("type", "endpoint"))
        self.statuses = counter("registry_notifications_status_total", "The number of status code",
                                ("code", "endpoint"))
        self.pending = gauge("registry_notifications_pending_total",
                             "The gauge of pending events in queue", ("endpoint",), "livesum")
        self.notify_other = counter("fastreg_notifications_events_total",
                                    "Events dropped (a full queue or spool) or filtered out "
                                    "(ignored media types and actions), by endpoint.",
                                    ("type", "endpoint"))
        proxy = (("requests", "The number of total incoming proxy request received"),
                 ("hits", "The number of total proxy request hits"),
                 ("misses", "The number of total proxy request misses"),
                 ("pulled_bytes", "The size of total bytes pulled from the upstream"),
                 ("pushed_bytes", "The size of total bytes pushed to the client"))
        self.proxy = {n: counter(f"registry_proxy_{n}_total", doc, ("type",)) for n, doc in proxy}
        self.proxy_upstream = {
            n: counter(f"fastreg_proxy_{n}_total", f"{doc}, by upstream.", ("type", "upstream"))
            for n, doc in proxy}
        self.proxy_errors = counter("fastreg_proxy_upstream_errors_total",
                                    "Upstream requests that failed (unreachable, timed out, 5xx, "
                                    "429, invalid answers), by upstream.", ("upstream",))
        # sampled, not written per request (two writes fewer: see benchmarks/RESULTS.md); every
        # handler present from the start, as go-metrics' gauges are
        self.mirror(self.in_flight, lambda: [((h,), n) for h, n in self.flight.items()], gauge=True)
        self.sync()
        if self.multiprocess:
            assert self.directory is not None
            self._processes: _WorkerProcesses | None = _WorkerProcesses(self.directory)
        else:
            self._processes = None
            ProcessCollector(registry=registry)

    # -- recording ---------------------------------------------------------------------------

    def storage_call(self, driver: str, action: str, seconds: float, failed: bool) -> None:
        """One storage driver call (storage/instrumented.py)."""
        name = DRIVERS.get(driver, driver)
        distribution = STORAGE_ACTIONS.get(action)
        if distribution is not None:
            self.storage(name, distribution).observe(seconds)
        else:
            self.storage_other(name, action).observe(seconds)
        if failed:
            self.storage_errors(name, action).inc()

    def mirror(self, children: _Children, read: Callable[[], Reading], gauge: bool = False) -> None:
        """Have ``children`` follow what ``read`` reports (synced, see the module's docstring)."""
        self._mirrors.append(_Mirror(children, read, gauge))

    def sync(self) -> None:
        for mirror in self._mirrors:
            mirror.sync()
        for batch in self._batches:
            batch.flush()

    @property
    def uploads_in_flight(self) -> int:
        return sum(self.flight[h] for h in UPLOAD_HANDLERS)

    def upload_activity(self) -> tuple[int, float]:
        """(upload requests in flight, upload requests answered so far), of this process: the
        same at two looks with none in flight means no upload came or went (allocator.py)."""
        return self.uploads_in_flight, self.uploads_answered

    def answered(self, route: str, method: str, code: str, seconds: float, received: int,
                 sent: int) -> None:
        """One request of an API route, answered (or failed) with ``code``."""
        children = self._route.get((route, method))
        if children is None:
            children = self._route[(route, method)] = (
                self._batch(self.duration(route, method)),
                self._batch(self.request_size(route)), self._batch(self.response_size(route)))
        self.requests(code, route, method).inc()
        children[0].observe(seconds)
        children[1].observe(received)
        children[2].observe(sent)

    def _batch(self, child: Any) -> _Batch:
        for batch in self._batches:  # request and response sizes are per route, not method
            if batch.child is child:
                return batch
        batch = _Batch(child)
        self._batches.append(batch)
        return batch

    # -- reading -----------------------------------------------------------------------------

    def families(self) -> Iterable[Metric]:
        """Every metric, over all workers in multiprocess mode."""
        self.sync()
        if not self.multiprocess:
            return list(self.registry.collect())
        assert self._processes is not None and self.directory is not None
        collector = MultiProcessCollector(None, self.directory)  # type: ignore[no-untyped-call]
        collected = list(collector.collect())  # type: ignore[no-untyped-call]
        return [*collected, *self._processes.collect()]

    def render(self) -> bytes:
        """The Prometheus text exposition of `families`."""

        class _Once:
            def __init__(self, families: Iterable[Metric]) -> None:
                self._families = families

            def collect(self) -> Iterable[Metric]:
                return self._families

        return generate_latest(_Once(self.families()))

    def totals(self) -> dict[str, Any]:
        """The request counts /debug/vars shows, over all workers."""
        out: dict[str, Any] = {"requests": 0, "requests_by_status": {}, "bytes_in": 0,
                               "bytes_out": 0, "requests_in_flight": 0, "uploads_in_flight": 0}
        by_status: dict[str, int] = out["requests_by_status"]
        for family in self.families():
            for s in family.samples:
                if s.name == "registry_http_requests_total":
                    out["requests"] += int(s.value)
                    by_status[s.labels["code"]] = by_status.get(s.labels["code"], 0) + int(s.value)
                elif s.name == "registry_http_request_size_bytes_sum":
                    out["bytes_in"] += int(s.value)
                elif s.name == "registry_http_response_size_bytes_sum":
                    out["bytes_out"] += int(s.value)
                elif s.name == "registry_http_in_flight_requests":
                    out["requests_in_flight"] += int(s.value)
                    if s.labels["handler"] in UPLOAD_HANDLERS:
                        out["uploads_in_flight"] += int(s.value)
        return out


METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)


async def sync_forever(app: web.Application) -> AsyncIterator[None]:
    """In a worker, copy the component counters into the shared files every `SYNC_SECONDS`
    (a scrape may be answered by another worker); one process syncs when it is scraped."""
    metrics = app[METRICS]
    task: asyncio.Task[None] | None = None

    async def loop() -> None:
        while True:
            await asyncio.sleep(SYNC_SECONDS)
            metrics.sync()

    if metrics.multiprocess:
        task = asyncio.create_task(loop(), name="metrics-sync")
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    metrics.sync()


def _request_size(request: web.Request) -> int:
    """client_golang's computeApproximateRequestSize, with the body bytes actually received."""
    head = len(request.raw_path) + len(request.method) + 8 + len(request.host)  # 8: "HTTP/1.1"
    return head + sum(len(n) + len(v) for n, v in request.raw_headers) + received_bytes(request)


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    started = time.perf_counter()
    status = 500
    response: web.StreamResponse | None = None
    resolved: Resolved | None = request.get(RESOLVED)
    route = HANDLERS.get(resolved.route.name) if resolved is not None else None
    if route is not None:
        metrics.flight[route] += 1
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        method = METHODS.get(request.method, "unknown")
        if route is None:
            metrics.unrouted(str(status), method).inc()
        else:
            metrics.flight[route] -= 1
            if route in UPLOAD_HANDLERS:
                metrics.uploads_answered += 1
            metrics.answered(route, method, str(status), time.perf_counter() - started,
                             _request_size(request), sent_bytes(request, response))
