"""The request pipeline: every middleware of the API in one list, outermost first, and why.

aiohttp runs the list around the router's handler (for `/v2/...`, `fastreg.api.routes.dispatch`,
which checks method, name and read-only mode and calls the endpoint's handler):

- Before all, only with tracing (`OTEL_*`, server/tracing.py): `trace_request`, the request's
  server span, outermost so that it covers every step below, the route match included, and the
  status finally sent; the storage calls inside are its children.

1. `resolve_route` (api/routes.py): matches the route table, the only time a request is matched,
   and puts route, parameters and (once checked) repository on the request (`RESOLVED`) for
   every step below. First, because metrics count the request in flight by its route; it only
   matches and never fails, so no step outside it has anything to catch.
2. `observe` (server/metrics.py): counts and times every request with its final status; outside
   `access_log` and `errors` so that failures and refusals are counted with the status sent.
3. `access_log` (api/middleware.py): one line per request with the final status, the failed
   ones too (outside `errors`); it also gives the request its id, which every inner step logs.
4. `errors` (api/middleware.py): turns any exception into the OCI error body. Every step inside
   it refuses by raising `RegistryError`.
5. `host_check` (api/middleware.py): 400 for a Host that cannot go into a URL, before anything
   writes the Host into a Location or an event.
6. `health_gate` (server/health.py): 503 UNAVAILABLE while a health check fails, before
   credentials are checked (a registry that cannot serve says so to everyone).
7. `authorize` (auth/middleware.py), only with `auth:`: inside `errors` (a refusal is the OCI
   body with its challenge), outside `notify` (a refused request produces no event).
8. `notify` (notify/service.py), only with an enabled endpoint: innermost, so it sees only what
   a handler returned; a failure raises past it and produces no event.

The optional steps are left out, not skipped per request, when their feature is not configured.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from fastreg.api.middleware import access_log, errors, host_check
from fastreg.api.routes import resolve_route
from fastreg.auth.middleware import ACCESS, authorize
from fastreg.notify.service import NOTIFIER, notify
from fastreg.server.health import health_gate
from fastreg.server.metrics import observe
from fastreg.server.tracing import TRACING


def middlewares(app: web.Application) -> list[Middleware]:
    """The pipeline for ``app``, whose features (`ACCESS`, `NOTIFIER`) are configured by now."""
    pipeline: list[Middleware] = [
        resolve_route, observe, access_log, errors, host_check, health_gate
    ]
    if ACCESS in app:
        pipeline.append(authorize)
    if NOTIFIER in app:
        pipeline.append(notify)
    if TRACING in app:
        pipeline.insert(0, app[TRACING].middleware)
    return pipeline


def setup_pipeline(app: web.Application) -> None:
    """Install the pipeline; call after every `setup_*` that configures an optional step."""
    app.middlewares.extend(middlewares(app))
