"""Typed application keys, and what the pipeline learns about a request on its way in.

The API's state hangs off the Application under the `web.AppKey`s here; what is known about one
request (its id, its route, who sent it) under the `web.RequestKey`s. The route is found once,
when the request arrives (`routes.resolve_route`), as a `Resolved` that every later step reads.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from fastreg.api.sendfile import Sender
from fastreg.registry.errors import RegistryError
from fastreg.registry.policy import Caller
from fastreg.registry.service import Registry

Handler = Callable[[web.Request, dict[str, str]], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class HTTPSettings:
    host: str = ""  # http.host: the externally visible base URL, e.g. https://registry.example.com
    relativeurls: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    sendtimeout: float = 60.0  # http.sendtimeout: a download accepting no byte this long is cut
    readtimeout: float = 60.0  # http.readtimeout: a request body idle this long is cut
    # http.trustedproxies: peers whose X-Forwarded-For / X-Real-IP name the client
    trustedproxies: TrustedProxies = field(default_factory=lambda: TrustedProxies(()))


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TrustedProxies:
    """`http.trustedproxies`: the networks whose peers may say who the client is (nginx's
    `set_real_ip_from` with `real_ip_recursive on`). Empty (the default): nobody may, and the
    client is the TCP peer whatever the headers claim."""

    def __init__(self, networks: tuple[IPNetwork, ...]) -> None:
        self.networks = networks
        self._seen: dict[str, bool] = {}  # peer address -> trusted; peers are few, proxies fewer

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str) -> bool:
        known = self._seen.get(address)
        if known is None:
            ip = parse_ip(address)
            known = ip is not None and any(ip in net for net in self.networks)
            if len(self._seen) > 4096:
                self._seen.clear()
            self._seen[address] = known
        return known


def parse_ip(text: str) -> IPAddress | None:
    """An IP address, an IPv4-mapped IPv6 one as its IPv4 address; None for anything else."""
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


REGISTRY: web.AppKey[Registry] = web.AppKey("registry", Registry)
HTTP: web.AppKey[HTTPSettings] = web.AppKey("http", HTTPSettings)
# request ids: a random per-process prefix and a counter (uuid4 per request costs ~5% of a GET)
class RequestIds:
    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._counter):x}"


REQUEST_IDS: web.AppKey[RequestIds] = web.AppKey("request_ids", RequestIds)
# the threads that send blob files with sendfile(2), every download multiplexed on a few
SENDER: web.AppKey[Sender] = web.AppKey("sender", Sender)


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    pattern: re.Pattern[str]
    methods: Mapping[str, Handler]


@dataclass(slots=True)
class Resolved:
    """The API route a request asked for: matched once, on arrival, and read by every later
    step (metrics, access control, the dispatcher and its handler, the access log, events).

    Not frozen: the dispatcher fills in what it checked, and the sinks outside it label a
    request only with what was checked (`repository` once the name follows the grammar, the
    route once its handler ran), so a refused request is counted and logged as it always was.
    """

    route: Route
    params: dict[str, str]  # the last segment (tag, digest, upload id) percent-decoded
    repository: str | None = None  # the `name`, once the dispatcher validated it
    accepted: bool = False  # the dispatcher handed the request to its handler

    @property
    def handled_route(self) -> str | None:
        """The route name, once the request reached its handler (the sinks' label)."""
        return self.route.name if self.accepted else None


REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
RESOLVED: web.RequestKey[Resolved] = web.RequestKey("resolved", Resolved)
# set by access control: the `actor.name` of events, and who asks (for the registry's mount rule)
ACTOR: web.RequestKey[str] = web.RequestKey("actor", str)
CALLER: web.RequestKey[Caller] = web.RequestKey("caller")
# who sent the request (`client_addr`), found once
CLIENT_ADDR: web.RequestKey[str] = web.RequestKey("client_addr", str)
# the error a request was answered with (set by `errors`): the access log's `err.code`
FAILURE: web.RequestKey[RegistryError] = web.RequestKey("failure", RegistryError)


def registry_of(request: web.Request) -> Registry:
    return request.app[REGISTRY]


# what a proxy may claim as the client's scheme (a Location is only ever http or https, never
# `javascript:`) and host[:port] (RFC 7230 Host: an IP literal or a name, and a port)
_SCHEME = re.compile(r"https?", re.IGNORECASE)
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]+)(?::[0-9]{1,5})?")


def valid_host(value: str) -> bool:
    """True for a Host that can go into a Location as it is (`a b`, `[::1`, `x/y?` cannot)."""
    return _HOST.fullmatch(value) is not None


def url_for(request: web.Request, path: str) -> str:
    """A Location for ``path``: relative when configured, else absolute on the visible host.

    The scheme and host come from `http.host`, else from the first element of an RFC 7239
    `Forwarded` header (`proto=`, `host=`), else from X-Forwarded-Proto/-Host (first of a list),
    else from the request itself; each part separately, and a malformed value is passed over.
    A proxy in front must set (or remove) the headers it does not want clients to choose.
    """
    settings = request.app[HTTP]
    if settings.relativeurls:
        return path
    if settings.host:
        return settings.host.rstrip("/") + path
    forwarded = request.forwarded[0] if request.forwarded else {}
    headers = request.headers
    proto = _claimed(_SCHEME, forwarded.get("proto"), headers.get("X-Forwarded-Proto"))
    host = _claimed(_HOST, forwarded.get("host"), headers.get("X-Forwarded-Host"))
    return f"{(proto or request.scheme).lower()}://{host or request.host}{path}"


def _claimed(pattern: re.Pattern[str], forwarded: str | None, x_forwarded: str | None) -> str:
    for value in (forwarded, (x_forwarded or "").split(",")[0].strip()):
        if value and pattern.fullmatch(value):
            return value
    return ""


def client_addr(request: web.Request) -> str:
    """Who sent ``request``: Distribution's `http.request.remoteaddr`, but unspoofable.

    Found once (the access log asks first, when the request arrives: a download sent with
    sendfile has let go of its transport by the time the line is written) and kept.

    The TCP peer as `host:port` (`[v6]:port`), as Go's `RemoteAddr`. Only when the peer is a
    trusted proxy (`http.trustedproxies`) do its headers count: `X-Forwarded-For` is walked from
    the right (the hop nearest us) past every trusted address, and the first untrusted one is
    the client, so a client cannot pick its address by sending `X-Forwarded-For: 1.2.3.4`
    through the proxy (which appends the address it saw). A malformed entry ends the walk at
    the hop that relayed it. Without the header, `X-Real-IP` (one address) counts; if every hop
    is trusted, the left-most is the client. A forwarded address is written without a port, as
    in Distribution.
    """
    known = request.get(CLIENT_ADDR)
    if known is None:
        known = request[CLIENT_ADDR] = _client_addr(request)
    return known


def _client_addr(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peer, (tuple, list)) and len(peer) >= 2:
        host, port = str(peer[0]), peer[1]
    else:  # a unix socket, or a connection gone already
        host, port = request.remote or "", None
    http = request.app.get(HTTP)  # absent on an app without the registry's settings (token server)
    trusted = http.trustedproxies if http is not None else None
    if trusted and trusted.trusts(host):
        forwarded = _forwarded_client(request, trusted)
        if forwarded:
            return forwarded
    if port is None:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _forwarded_client(request: web.Request, trusted: TrustedProxies) -> str:
    hops = [hop.strip() for value in request.headers.getall("X-Forwarded-For", ())
            for hop in value.split(",")]  # fmt: skip
    client = ""
    for hop in reversed(hops):
        ip = parse_ip(hop)
        if ip is None:
            break
        client = str(ip)
        if not trusted.trusts(client):
            break
    if client or hops:
        return client
    real = parse_ip(request.headers.get("X-Real-IP", ""))
    return str(real) if real is not None else ""
