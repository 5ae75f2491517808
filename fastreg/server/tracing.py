"""OpenTelemetry tracing, as Distribution 3 has it, configured by the standard ``OTEL_*`` variables.

Off unless the environment asks for it, and then nothing of OpenTelemetry is imported, the
pipeline has no tracing step and the storage driver is not wrapped: an untraced registry pays
nothing. It is on when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``), or,
with that variable unset, when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (OTLP then); ``OTEL_TRACES_EXPORTER=none`` and
``OTEL_SDK_DISABLED=true`` keep it off whatever else is set. Distribution 3 differs there: its
`autoexport` falls back to OTLP on ``localhost:4318`` when nothing is set, so it always traces
and sends; fastreg does not send spans to a collector nobody configured.

Everything else is read by OpenTelemetry's SDK from the same environment, as the specification
names it: the endpoint, headers, timeout, compression and TLS files of the OTLP exporter
(``OTEL_EXPORTER_OTLP_[TRACES_]*``), the batch processor (``OTEL_BSP_*``), the sampler
(``OTEL_TRACES_SAMPLER`` and ``_ARG``; default ``parentbased_always_on``, so an incoming
``traceparent`` that is not sampled is not traced here either, where Distribution samples every
request), the propagators (``OTEL_PROPAGATORS``, default W3C ``tracecontext,baggage``), and the
resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``). The service name defaults to
Distribution's, ``distribution``, so trace queries built for it keep working.

OTLP is exported over HTTP with protobuf (the collector's port 4318): ``grpc`` or ``http/json``
in ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`` are not spoken. A configuration that cannot be served
that way, or the ``tracing`` extra not installed, is one warning at start (`startup_warnings`,
logged by the command line once, not by each worker) and the registry serves untraced: traces
are worth less than the registry, and ``OTEL_*`` variables are often set for every process of a
host or cluster, not for this one.

Each worker process builds its own provider when its application is created (after the spawn:
nothing is shared between processes), with one `BatchSpanProcessor` per exporter, and shuts it
down when the application stops, which exports what is still queued.

Spans: one SERVER span per request, named as Distribution's `otelhttp` handler names it (method
and path: ``GET /v2/library/alpine/manifests/latest``), under the span of an incoming
``traceparent``, with the stable HTTP semantic-convention attributes (``http.request.method``,
``url.path``, ``url.scheme``, ``server.address``/``port``, ``client.address``,
``network.peer.*``, ``network.protocol.version``, ``user_agent.original``, ``http.route``,
``http.response.status_code``, body sizes, ``error.type`` and an ERROR status for a 5xx). The
query string is left out: upload locations carry state in it. The storage driver's calls are its
children (`fastreg.storage.traced`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from fastreg import __version__
from fastreg.api.context import REQUEST_ID, RESOLVED, Resolved, Route
from fastreg.api.middleware import received_bytes, sent_bytes
from fastreg.storage.base import StorageDriver

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger("fastreg.tracing")

EXPORTERS = ("otlp", "console")
PROTOCOL = "http/protobuf"
SERVICE_NAME = "distribution"  # Distribution's `tracing.serviceName`
# the modules each exporter needs, checked (not imported) before tracing is turned on
_NEEDS = {
    "otlp": ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter"),
    "console": ("opentelemetry.sdk.trace",),
}
# http.request.method: the methods the semantic conventions know; any other is `_OTHER`
_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)


@dataclass(frozen=True, slots=True)
class TracingSettings:
    exporters: tuple[str, ...] = ()  # empty: tracing is off
    warnings: tuple[str, ...] = ()  # why what the environment asked for is not (all) done


def tracing_settings(environ: Mapping[str, str]) -> TracingSettings:
    """What ``environ``'s ``OTEL_*`` variables ask for, and what of it fastreg can do."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return TracingSettings()
    asked = environ.get("OTEL_TRACES_EXPORTER", "")
    names = [n.strip().lower() for n in asked.split(",") if n.strip()]
    if not names:
        endpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        if not any(environ.get(name, "").strip() for name in endpoint):
            return TracingSettings()
        names = ["otlp"]
    if "none" in names:
        return TracingSettings()
    warnings = []
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        warnings.append(
            f"OTEL_TRACES_EXPORTER={asked}: fastreg has no {', '.join(unknown)} exporter "
            f"(it has {', '.join(EXPORTERS)}); no spans are sent there"
        )
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or PROTOCOL
    ).strip()
    if "otlp" in names and protocol != PROTOCOL:
        warnings.append(
            f"OTLP protocol {protocol!r} is not supported: fastreg exports OTLP over HTTP "
            f"({PROTOCOL}, the collector's port 4318); no spans are sent over OTLP"
        )
        names.remove("otlp")
    exporters = tuple(dict.fromkeys(n for n in names if n in EXPORTERS))
    if exporters and not all(_importable(m) for e in exporters for m in _NEEDS[e]):
        warnings.append(
            "tracing is configured by OTEL_* variables but OpenTelemetry is not installed "
            "(pip install 'fastreg[tracing]'); tracing is off"
        )
        exporters = ()
    return TracingSettings(exporters, tuple(warnings))


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def startup_warnings(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The warnings to log once at start (the command line's supervisor, before any worker)."""
    return tracing_settings(environ).warnings


class Tracing:
    """One worker's tracer provider, its tracers, and the request middleware."""

    def __init__(self, settings: TracingSettings) -> None:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.exporters = settings.exporters
        self.provider: TracerProvider = TracerProvider(resource=_resource(), shutdown_on_exit=False)
        for name in settings.exporters:
            self.provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
        self.server: Tracer = self.provider.get_tracer("fastreg.server", __version__)
        self.storage: Tracer = self.provider.get_tracer("fastreg.storage", __version__)
        self.middleware: Middleware = _request_middleware(self.server)

    async def shutdown(self) -> None:
        """Export what is queued and stop the export threads (on a thread: it sends)."""
        await asyncio.to_thread(self.provider.shutdown)


def _resource() -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME as NAME
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create({"service.version": __version__, "process.pid": os.getpid()})
    if str(resource.attributes.get(NAME, "unknown_service")).startswith("unknown_service"):
        resource = resource.merge(Resource({NAME: SERVICE_NAME}))
    return resource


def _exporter(name: str) -> Any:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # endpoint, headers, timeout...: the OTEL_EXPORTER_OTLP_* ones
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    return ConsoleSpanExporter()


def _request_middleware(tracer: Tracer) -> Middleware:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    @web.middleware
    async def trace_request(request: web.Request, handler: Handler) -> web.StreamResponse:
        span = tracer.start_span(
            f"{request.method} {request.path}",
            context=propagate.extract(request.headers),
            kind=SpanKind.SERVER,
            attributes=_request_attributes(request),
        )
        response: web.StreamResponse | None = None
        status = 500
        with trace.use_span(span, record_exception=False, set_status_on_exception=False):
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                response, status = exc, exc.status
                raise
            except BaseException as exc:  # past `errors`: cancelled, or a failure of aiohttp
                span.record_exception(exc)
                span.set_attribute("error.type", type(exc).__qualname__)
                raise
            finally:
                if span.is_recording():
                    _finish(span, request, status, response)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                span.end()

    return trace_request


def _request_attributes(request: web.Request) -> dict[str, Any]:
    method = request.method
    attributes: dict[str, Any] = {
        "http.request.method": method if method in _METHODS else "_OTHER",
        "url.path": request.path,
        "url.scheme": request.scheme,
        "network.protocol.version": f"{request.version.major}.{request.version.minor}",
    }
    if method not in _METHODS:
        attributes["http.request.method_original"] = method
    try:  # from the Host header; one that is not a host[:port] is refused later (host_check)
        url = request.url
        if url.host:
            attributes["server.address"] = url.host
        if url.port is not None:
            attributes["server.port"] = url.port
    except ValueError:
        pass
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        attributes["network.peer.address"], attributes["network.peer.port"] = peer[0], peer[1]
    if request.remote:
        attributes["client.address"] = request.remote
    agent = request.headers.get("User-Agent")
    if agent:
        attributes["user_agent.original"] = agent
    return attributes


def _finish(
    span: Span, request: web.Request, status: int, response: web.StreamResponse | None
) -> None:
    resolved: Resolved | None = request.get(RESOLVED)
    if resolved is not None:
        span.set_attribute("http.route", route_template(resolved.route))
    span.set_attribute("http.response.status_code", status)
    received = received_bytes(request)
    if received:
        span.set_attribute("http.request.body.size", received)
    sent = sent_bytes(request, response)
    if sent:
        span.set_attribute("http.response.body.size", sent)
    if status >= 500:
        span.set_attribute("error.type", str(status))
    request_id = request.get(REQUEST_ID)
    if request_id is not None:  # the access log's request id: from a trace to its log line
        span.set_attribute("fastreg.request.id", request_id)


_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def route_template(route: Route) -> str:
    """``http.route``: the route's path with its parameters named, ``/v2/{name}/blobs/{digest}``."""
    return _GROUP.sub(r"{\1}", route.pattern.pattern).removesuffix("?")


TRACING: web.AppKey[Tracing] = web.AppKey("tracing", Tracing)


def setup_tracing(app: web.Application, environ: Mapping[str, str] | None = None) -> None:
    """Turn tracing on for ``app`` when ``environ`` (default ``os.environ``) asks for it; call
    first in the factory, so that its shutdown is the last cleanup step, after the last span."""
    settings = tracing_settings(os.environ if environ is None else environ)
    if not settings.exporters:
        return
    app[TRACING] = Tracing(settings)
    app.cleanup_ctx.append(_tracing_lifecycle)
    log.info("tracing on", extra={"exporters": list(settings.exporters)})


async def _tracing_lifecycle(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[TRACING].shutdown()


def trace_storage(app: web.Application, driver: StorageDriver) -> StorageDriver:
    """``driver`` with a span per call when tracing is on, else ``driver`` itself."""
    tracing = app.get(TRACING)
    if tracing is None:
        return driver
    from fastreg.storage.traced import traced

    return traced(driver, tracing.storage)


def tracing_vars(app: web.Application) -> dict[str, Any]:
    """For /debug/vars: this worker's exporters, and whether OpenTelemetry is loaded at all."""
    tracing = app.get(TRACING)
    return {
        "exporters": list(tracing.exporters) if tracing is not None else [],
        "opentelemetry_loaded": "opentelemetry" in sys.modules,
    }
