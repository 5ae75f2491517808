"""The whole route table of the OCI Distribution API, in one block, its resolver and dispatcher.

Repository names contain slashes, so routes are matched from the right on the raw path (like
Distribution's router) by one table, once per request: `resolve_route`, the first step of the
pipeline (`fastreg.server.pipeline`), puts the match on the request (`RESOLVED`) for metrics,
access control and `dispatch` to read. `dispatch` checks the name against the spec grammar
before a handler runs: a malformed name is 400 NAME_INVALID with the error body, never a path
on disk. It then hands the handler the name as stored (`Registry.route`: on a mirror of many
upstreams, `library/alpine?ns=docker.io` is `docker.io/library/alpine`); access control, metrics
and events keep the name the client asked for (`Resolved`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import unquote

from aiohttp import HttpVersion11, web
from aiohttp.typedefs import Handler as NextHandler

from fastreg.api import base, blobs, listing, manifests, uploads
from fastreg.api.context import RESOLVED, Handler, Resolved, Route, registry_of
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.names import validate_name

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _route(name: str, path: str, methods: Mapping[str, Handler]) -> Route:
    return Route(name, re.compile(path.replace("<name>", "(?P<name>.+)")), methods)


#   spec       method  path
#   end-1      GET     /v2/
#   end-2      GET     /v2/<name>/blobs/<digest>            (HEAD too)
#   end-3      GET     /v2/<name>/manifests/<reference>     (HEAD too)
#   end-4a/4b  POST    /v2/<name>/blobs/uploads/            (?digest=, ?mount=&from=)
#   end-5      PATCH   /v2/<name>/blobs/uploads/<uuid>
#   end-6      PUT     /v2/<name>/blobs/uploads/<uuid>?digest=
#   end-7      PUT     /v2/<name>/manifests/<reference>
#   end-8a/8b  GET     /v2/<name>/tags/list                 (?n=&last=)
#   end-9      DELETE  /v2/<name>/manifests/<reference>
#   end-10     DELETE  /v2/<name>/blobs/<digest>
#   end-11     POST    /v2/<name>/blobs/uploads/?mount=<digest>&from=<other>
#   end-12a/b  GET     /v2/<name>/referrers/<digest>        (?artifactType=)
#   end-13     GET     /v2/<name>/blobs/uploads/<uuid>
#   (extra)    DELETE  /v2/<name>/blobs/uploads/<uuid>      cancel
#   (extra)    GET     /v2/_catalog                         (?n=&last=)
ROUTES: tuple[Route, ...] = (
    _route("base", r"/v2/", {"GET": base.version_check, "HEAD": base.version_check}),
    _route("catalog", r"/v2/_catalog", {"GET": listing.catalog}),
    _route("tags", r"/v2/<name>/tags/list", {"GET": listing.list_tags}),
    _route(
        "manifest",
        r"/v2/<name>/manifests/(?P<reference>[^/]+)",
        {
            "GET": manifests.get_manifest,
            "HEAD": manifests.get_manifest,
            "PUT": manifests.put_manifest,
            "DELETE": manifests.delete_manifest,
        },
    ),
    _route("upload_start", r"/v2/<name>/blobs/uploads/?", {"POST": uploads.start_upload}),
    _route(
        "upload",
        r"/v2/<name>/blobs/uploads/(?P<uuid>[^/]+)",
        {
            "GET": uploads.upload_status,
            "PATCH": uploads.patch_upload,
            "PUT": uploads.finish_upload,
            "DELETE": uploads.cancel_upload,
        },
    ),
    _route(
        "blob",
        r"/v2/<name>/blobs/(?P<digest>[^/]+)",
        {"GET": blobs.get_blob, "HEAD": blobs.head_blob, "DELETE": blobs.delete_blob},
    ),
    _route("referrers", r"/v2/<name>/referrers/(?P<digest>[^/]+)", {"GET": listing.referrers}),
)


def match(path: str) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        m = route.pattern.fullmatch(path)
        if m is not None:
            return route, m.groupdict()
    return None


def resolve(request: web.Request) -> Resolved | None:
    """The route and parameters of a request, or None when it is not an API route."""
    # the raw path: a percent-encoded "/" must not split a name into components (it is simply
    # not in the name grammar); the last segment (tag, digest, upload id) is decoded
    found = match(request.raw_path.split("?", 1)[0])
    if found is None:
        return None
    route, params = found
    return Resolved(route, {k: v if k == "name" else unquote(v) for k, v in params.items()})


@web.middleware
async def resolve_route(request: web.Request, handler: NextHandler) -> web.StreamResponse:
    """Match the route table, once: every later step reads the answer from `RESOLVED`.

    Only matches, never refuses (it runs outside the error middleware): an unknown endpoint,
    a method the route lacks and a malformed name are `dispatch`'s to answer.
    """
    resolved = resolve(request)
    if resolved is not None:
        request[RESOLVED] = resolved
    return await handler(request)


async def dispatch(request: web.Request) -> web.StreamResponse:
    resolved: Resolved | None = request.get(RESOLVED)
    if resolved is None:
        raise RegistryError(ErrorCode.NAME_UNKNOWN, "unknown API endpoint", {"path": request.path[:200]})
    route, params = resolved.route, resolved.params
    handler = route.methods.get(request.method)
    if handler is None:
        raise RegistryError(
            ErrorCode.UNSUPPORTED,
            f"{request.method} is not supported on {route.name}",
            headers={"Allow": ", ".join(route.methods)},
        )
    registry = registry_of(request)
    repository = None
    if "name" in params:
        resolved.repository = validate_name(params["name"])
        # the name in storage, and its upstream on a mirror (containerd's mirrors send `ns`)
        repository = registry.route(resolved.repository, request.query.get("ns"))
        if repository.local != resolved.repository:  # prefixed: within 255 characters still?
            params = {**params, "name": validate_name(repository.local)}
    if request.method in WRITES:
        registry.policy.check_writable(repository)
    resolved.accepted = True
    return await handler(request, params)


def setup_routes(app: web.Application) -> None:
    app.router.add_route("*", "/v2", _redirect_v2, expect_handler=_expect)
    app.router.add_route("*", "/v2/{tail:.*}", dispatch, expect_handler=_expect)


async def _expect(request: web.Request) -> None:
    """`Expect: 100-continue` gets its interim answer; any other expectation is ignored, as RFC
    9110 10.1.1 allows (aiohttp's default answers a plain-text 417 outside the error middleware,
    and a 500 when the value holds bytes that are not UTF-8)."""
    expect = request.headers.get("Expect", "")
    if request.version == HttpVersion11 and expect.lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the interim answer is not part of the response


async def _redirect_v2(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/v2/")
