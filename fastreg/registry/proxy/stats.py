"""What the pull-through cache counts, as Distribution's `registry/proxy/proxymetrics.go` does: per
artifact (`blob`, `manifest`) the requests served, the hits (served from the cache), the misses
(pulled from the upstream), the bytes pulled and the bytes pushed to clients; and the upstream's
failures.

Plain integers of this process, kept by `mirror.py` with one call each: the server copies them
into its Prometheus counters with the upstream's host as a label (`fastreg.server.metrics`), so
the registry layer imports no metrics code and a pull costs no file write.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ARTIFACTS = ("blob", "manifest")


@dataclass(slots=True)
class Tally:
    requests: int = 0
    hits: int = 0
    misses: int = 0
    pulled_bytes: int = 0
    pushed_bytes: int = 0


@dataclass(slots=True)
class ProxyStats:
    upstream: str  # the remote URL's host, the label that tells upstreams apart
    tallies: dict[str, Tally] = field(default_factory=lambda: {a: Tally() for a in ARTIFACTS})
    upstream_errors: int = 0

    def served(self, artifact: str, size: int, hit: bool) -> None:
        """A client is served ``size`` bytes, from the cache when ``hit`` (Distribution's Push)."""
        tally = self.tallies[artifact]
        tally.requests += 1
        tally.pushed_bytes += size
        tally.hits += hit

    def pulled(self, artifact: str, size: int) -> None:
        """``size`` bytes fetched from the upstream into the cache (Distribution's Pull)."""
        tally = self.tallies[artifact]
        tally.misses += 1
        tally.pulled_bytes += size

    def failed(self) -> None:
        """The upstream failed a request (unreachable, timed out, 5xx, 429, an invalid answer)."""
        self.upstream_errors += 1
