"""A span per storage driver call, as Distribution 3's driver base has them (`base/base.go`).

`traced(driver, tracer)` is applied by the application factory only when tracing is configured
(`fastreg.server.tracing`), so this module, and OpenTelemetry with it, is imported only then;
without tracing the driver is not wrapped and a call costs nothing more.

Span names and attributes are Distribution's: the method's Go name (`GetContent`, `PutContent`,
`Reader`, `Writer`, `Stat`, `List`, `Move`, `Delete`, `RedirectURL` for `url_for`), with
`io.cncf.distribution.storage.driver.name` and `.storage.path` (`.source.path` and `.dest.path`
for a move, `.content.length` for a put, `.offset` for a read, `.append` for a writer), so a trace
query written for Distribution finds them. fastreg's own calls are named in the same style:
`Publish` (a move that never replaces, `base.py`), `Lease`, and the writer's `Commit` and
`Cancel` (where an object store completes or aborts its upload); a writer's `write`s are not
spans (one per MiB of a layer). The health check's `healthy` and `close` are not either: they
run outside any request and would only add root spans every few seconds.

A span is started under the current one (the request's server span) but not made current: the
calls nest nothing, and `reader` is a generator whose span stays open across its yields (until
the stream is read or dropped), which a current-span context cannot do safely. A failed call
sets the span's status to ERROR with the exception recorded; `PathNotFound` is an answer, not a
failure (as in the metrics wrapper), and leaves the status unset.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from opentelemetry.trace import Span, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from fastreg.storage.base import PathNotFound, StorageDriver
from fastreg.storage.wrapping import Detail, WrappedDriver

PREFIX = "io.cncf.distribution."  # Distribution's `tracing.AttributePrefix`
DRIVER = PREFIX + "storage.driver.name"
PATH = PREFIX + "storage.path"
SOURCE = PREFIX + "storage.source.path"
DEST = PREFIX + "storage.dest.path"


#: the span of each call: Distribution's name, and the attribute ``detail`` is recorded as
SPANS: dict[str, tuple[str, str | None]] = {
    "get_content": ("GetContent", None),
    "put_content": ("PutContent", PREFIX + "storage.content.length"),
    "reader": ("Reader", PREFIX + "storage.offset"),
    "writer": ("Writer", PREFIX + "storage.append"),
    "stat": ("Stat", None),
    "list": ("List", None),
    "move": ("Move", DEST),
    "publish": ("Publish", DEST),
    "lease": ("Lease", None),
    "delete": ("Delete", None),
    "url_for": ("RedirectURL", None),
    "commit": ("Commit", None),
    "cancel": ("Cancel", None),
}


class TracedDriver(WrappedDriver):
    def __init__(self, inner: StorageDriver, tracer: Tracer) -> None:
        super().__init__(inner)
        self.tracer = tracer

    def watch(self, op: str, path: str, detail: Detail = None) -> AbstractContextManager[object]:
        spec = SPANS.get(op)
        if spec is None:  # a writer's write, healthy
            return nullcontext()
        name, key = spec
        attributes: dict[str, AttributeValue] = {DRIVER: self.name}
        attributes[SOURCE if key == DEST else PATH] = path
        if key is not None and detail is not None:
            attributes[key] = detail
        return self.span(name, attributes)

    @contextmanager
    def span(self, name: str, attributes: dict[str, AttributeValue]) -> Iterator[Span]:
        span = self.tracer.start_span(name, attributes=attributes)
        try:
            yield span
        except PathNotFound:
            raise
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            span.end()


def traced(driver: StorageDriver, tracer: Tracer) -> StorageDriver:
    """Wrap ``driver`` once (a driver taken from another app is unwrapped first)."""
    if isinstance(driver, TracedDriver):
        driver = driver.inner
    return TracedDriver(driver, tracer)
