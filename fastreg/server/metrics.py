"""Counters and histograms of one application, rendered in the Prometheus text format.

A `Metrics` object hangs off the Application (`METRICS`); nothing is global, so two apps in one
process (tests) count separately. Names follow Distribution 2.8's (`registry_http_*`,
`registry_storage_action_seconds`, `registry_notifications_*`) so existing dashboards keep
working. `observe` runs right after the route is resolved, outside everything else
(`pipeline.py`): it times every request, failures included.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

from fastreg.api.context import RESOLVED, Resolved
from fastreg.api.middleware import received_bytes, sent_bytes

Labels = tuple[str, ...]

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
STORAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
UPLOAD_ROUTES = frozenset({"upload", "upload_start"})


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Labels, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass(slots=True)
class Counter:
    name: str
    help: str
    labelnames: tuple[str, ...] = ()
    values: dict[Labels, float] = field(default_factory=dict)

    def inc(self, labels: Labels = (), amount: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + amount

    def total(self) -> float:
        return sum(self.values.values())

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.labelnames, labels)} {_num(value)}"


@dataclass(slots=True)
class Histogram:
    name: str
    help: str
    labelnames: tuple[str, ...]
    buckets: tuple[float, ...]
    counts: dict[Labels, list[int]] = field(default_factory=dict)
    sums: dict[Labels, float] = field(default_factory=dict)

    def observe(self, labels: Labels, value: float) -> None:
        counts = self.counts.get(labels)
        if counts is None:
            counts = self.counts[labels] = [0] * (len(self.buckets) + 1)
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[labels] = self.sums.get(labels, 0.0) + value

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, counts in sorted(self.counts.items()):
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                running += count
                le = f'le="{_num(bound)}"'
                yield f"{self.name}_bucket{_labels(self.labelnames, labels, le)} {running}"
            yield f"{self.name}_sum{_labels(self.labelnames, labels)} {_num(self.sums[labels])}"
            yield f"{self.name}_count{_labels(self.labelnames, labels)} {running}"


@dataclass(slots=True)
class Gauge:
    """A value read when rendering (queue depths, cache sizes)."""

    name: str
    help: str
    labelnames: tuple[str, ...]
    read: Callable[[], Iterable[tuple[Labels, float]]]

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        for labels, value in self.read():
            yield f"{self.name}{_labels(self.labelnames, labels)} {_num(value)}"


class Metrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.requests = Counter(
            "registry_http_requests_total", "Requests by handler, method and status code.",
            ("handler", "method", "code"),
        )
        self.duration = Histogram(
            "registry_http_request_duration_seconds", "Request latency by handler and method.",
            ("handler", "method"), HTTP_BUCKETS,
        )
        self.bytes_in = Counter(
            "registry_http_request_bytes_total", "Request body bytes by handler.", ("handler",)
        )
        self.bytes_out = Counter(
            "registry_http_response_bytes_total", "Response body bytes by handler.", ("handler",)
        )
        self.in_flight: dict[str, int] = {}
        self.storage = Histogram(
            "registry_storage_action_seconds", "Storage driver call latency by driver and action.",
            ("driver", "action"), STORAGE_BUCKETS,
        )
        self.storage_errors = Counter(
            "registry_storage_errors_total", "Storage driver calls that failed.",
            ("driver", "action"),
        )
        self.extra: list[Gauge | Counter] = []

    @property
    def uploads_in_flight(self) -> int:
        return sum(n for route, n in self.in_flight.items() if route in UPLOAD_ROUTES)

    def upload_activity(self) -> tuple[int, float]:
        """(upload requests in flight, upload requests answered so far): the same at two looks
        with none in flight means no upload came or went in between (allocator.py)."""
        answered = sum(n for labels, n in self.requests.values.items() if labels[0] in UPLOAD_ROUTES)
        return self.uploads_in_flight, answered

    def add(self, metric: Gauge | Counter) -> None:
        """A metric another part (notifications, caches, health) reports through this app."""
        self.extra.append(metric)

    def render(self) -> str:
        in_flight = Gauge(
            "registry_http_in_flight_requests", "Requests being served, by handler.",
            ("handler",), lambda: sorted(((r,), float(n)) for r, n in self.in_flight.items()),
        )
        start = Gauge(
            "process_start_time_seconds", "Start time of the process since the epoch.",
            (), lambda: [((), self.started)],
        )
        metrics: list[Counter | Histogram | Gauge] = [
            self.requests, self.duration, self.bytes_in, self.bytes_out, in_flight,
            self.storage, self.storage_errors, start, *self.extra,
        ]
        return "\n".join(line for m in metrics for line in m.render()) + "\n"


METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    started = time.perf_counter()
    status = 500
    response: web.StreamResponse | None = None
    # in flight: the route the request asked for; counted: the route whose handler ran
    resolved: Resolved | None = request.get(RESOLVED)
    key = resolved.route.name if resolved is not None else "other"
    metrics.in_flight[key] = metrics.in_flight.get(key, 0) + 1
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics.in_flight[key] -= 1
        route = (resolved.handled_route if resolved is not None else None) or "other"
        method = request.method
        metrics.requests.inc((route, method, str(status)))
        metrics.duration.observe((route, method), time.perf_counter() - started)
        metrics.bytes_in.inc((route,), received_bytes(request))
        metrics.bytes_out.inc((route,), sent_bytes(request, response))
