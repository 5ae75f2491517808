"""Which upstream a repository name belongs to, and its name in storage and upstream.

One mirror serves many upstreams (`proxy.upstreams`), each known by its `namespace`: the host
name clients use for it (`docker.io`, `ghcr.io`). A request reaches an upstream in one of two
ways, and both must land on the same cached content:

- containerd, configured with a mirror in `hosts.toml`, sends the name as the upstream knows it
  and the upstream's host in the `ns` query parameter: `GET /v2/library/alpine/manifests/3?ns=
  docker.io`. A namespace equal to `ns` takes the request.
- podman and docker users type the upstream's host as the first component of the name:
  `mirror:5000/ghcr.io/org/app` is `org/app` on ghcr.io. A namespace equal to the first
  component takes the request (the rest is the upstream's name; a name that *is* only the
  namespace is not routed).

Otherwise the top-level `remoteurl` (Distribution's one upstream), when configured, takes every
other name unchanged (as Distribution: docker clients already send `library/x` for Docker Hub's
official images, and Distribution's own storage holds them under that name); without it the name
is a local repository, read-write like any registry's.

Names in storage. Content of a namespaced upstream is stored (and listed by `_catalog`) under
`<namespace>/<upstream name>`, whichever way it was asked for: `library/alpine?ns=docker.io` and
`docker.io/alpine` are both `docker.io/library/alpine`, so an ns-routed and a prefix-routed pull
share one cache, and a local repository `library/alpine` beside them stays a different repository.
That storage name routes to the same upstream again (`route(route(n).local) == route(n)`), which
is what lets every layer below the API (the mirror, the expiry sweep) work from the stored name
alone. A namespace with a port (`registry.local:5000`) cannot be a name component, so its stored
prefix writes the `:` as `_` (`registry.local_5000`), a character no host name holds: no two
namespaces share a prefix, and that prefix also works as the first component of a request.
The default upstream's content is stored under the name asked, as Distribution does.

Docker Hub's official images: a single-component name on the `docker.io` namespace gets the
`library/` prefix Docker Hub's API needs (`docker.io/alpine` is `library/alpine`), by `ns` or by
prefix alike. The default upstream's names go through unchanged (Distribution's behaviour).

An `ns` that names no configured namespace, on a mirror without a default upstream, is a client
asking this mirror for another registry's content it does not have: the answer is 404
NAME_UNKNOWN (containerd then tries its next host), never a local repository that happens to
share the name.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.proxy.settings import ProxySettings, Upstream

DOCKER_HUB = "docker.io"
OFFICIAL = "library/"  # Docker Hub's namespace of official images


@dataclass(frozen=True, slots=True)
class Route:
    local: str  # the repository in storage (and in `_catalog`)
    upstream: Upstream | None  # None: a local repository
    remote: str  # its name on the upstream (the local name when there is none)

    @property
    def mirrored(self) -> bool:
        return self.upstream is not None


def storage_prefix(namespace: str) -> str:
    """The first name component under which a namespace's content is stored."""
    return namespace.replace(":", "_")


class Router:
    def __init__(self, settings: ProxySettings) -> None:
        self.default = settings.default
        self.upstreams = settings.upstreams
        self._by_namespace = {u.namespace: u for u in settings.upstreams}
        self._by_prefix = {storage_prefix(u.namespace): u for u in settings.upstreams}

    @property
    def enabled(self) -> bool:
        return self.default is not None or bool(self.upstreams)

    def route(self, name: str, ns: str | None = None) -> Route:
        """The route of a (valid) repository name, with containerd's ``ns`` parameter if any."""
        if ns:
            upstream = self._by_namespace.get(ns.lower())
            if upstream is not None:
                return _namespaced(upstream, name)
            if self.default is None and self.upstreams:
                raise RegistryError(
                    ErrorCode.NAME_UNKNOWN,
                    f"this mirror has no upstream for namespace {ns[:100]!r}",
                    {"name": name, "ns": ns[:100]},
                )
        first, _, rest = name.partition("/")
        upstream = self._by_prefix.get(first) if rest else None
        if upstream is not None:
            return _namespaced(upstream, rest)
        return Route(name, self.default, name)

    def remote_name(self, local: str) -> str:
        """The upstream's name for a stored name (the mirror's upstream client asks this)."""
        return self.route(local).remote


def _namespaced(upstream: Upstream, remote: str) -> Route:
    if upstream.namespace == DOCKER_HUB and "/" not in remote:
        remote = OFFICIAL + remote
    return Route(f"{storage_prefix(upstream.namespace)}/{remote}", upstream, remote)
