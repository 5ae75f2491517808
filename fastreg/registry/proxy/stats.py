"""What the pull-through cache counts, as Distribution's `registry/proxy/proxymetrics.go` does: per
artifact (`blob`, `manifest`) the requests served, the hits (served from the cache), the misses
(pulled from the upstream), the bytes pulled and the bytes pushed to clients; and the upstream's
failures.

Plain integers of this process, kept by `mirror.py` with one call each: the server copies them
into its Prometheus counters with the upstream's host as a label (`fastreg.server.metrics`), so
the registry layer imports no metrics code and a pull costs no file write.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

ARTIFACTS = ("blob", "manifest")
KINDS = ("requests", "hits", "misses", "pulled_bytes", "pushed_bytes")  # Distribution's names


@dataclass(slots=True)
class ProxyStats:
    upstream: str  # the remote URL's host, the label that tells upstreams apart
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (artifact, kind)
    upstream_errors: int = 0

    def count(self, artifact: str, kind: str) -> int:
        return self.counts[artifact, kind]

    def served(self, artifact: str, size: int, hit: bool) -> None:
        """A client is served ``size`` bytes, from the cache when ``hit`` (Distribution's Push)."""
        self.counts[artifact, "requests"] += 1
        self.counts[artifact, "pushed_bytes"] += size
        self.counts[artifact, "hits"] += hit

    def pulled(self, artifact: str, size: int) -> None:
        """``size`` bytes fetched from the upstream into the cache (Distribution's Pull)."""
        self.counts[artifact, "misses"] += 1
        self.counts[artifact, "pulled_bytes"] += size

    def failed(self) -> None:
        """The upstream failed a request (unreachable, timed out, 5xx, 429, an invalid answer)."""
        self.upstream_errors += 1
