"""Which layer URLs a pushed manifest may carry (`validation`), as Distribution 2.8 decides it.

A layer with `urls` (a Docker foreign layer, an OCI layer, non-distributable or not) tells clients
to fetch its bytes from somewhere else than this registry: a registry that accepts any URL serves
manifests pointing anywhere (an internal address, a host the operator never vetted). Distribution's
rules, read in its `registry/handlers/app.go` and the schema2 and OCI manifest handlers, and
checked against Debian's `docker-registry` 2.8.2 (tests/integration/test_validation.py):

- `validation.enabled` (deprecated) or else `not validation.disabled` turns the rules on (they are
  on by default). Off, every `http`/`https` URL is accepted. `disabled` does **not** skip the check
  that referenced blobs exist: Distribution skips that only for a pull-through cache's manifests.
- On, with neither `allow` nor `deny`: no URL is accepted (Distribution compiles `^$`), so a
  default registry refuses foreign layers. With lists, a URL must match one `allow` expression
  (when `allow` is given) and none of `deny` (when given); unanchored, as Go's `MatchString`.
- The scheme and fragment rule (`http`/`https`, no `#`) holds whatever the settings:
  `fastreg.registry.manifests` checks it when parsing.

A refused URL answers 400 MANIFEST_BLOB_UNKNOWN naming the layer's digest. Distribution sends
that code too, but after two UNKNOWN entries and with status 500, which makes clients retry a
push that can never succeed; the 400 and the message naming the URL and the setting are fastreg's.

The expressions are Go RE2 syntax in Distribution; Python's `re` reads the common subset the same
way (character classes, anchors, alternation, repetition). An expression `re` cannot compile stops
the start, naming the key, as an invalid RE2 expression stops Distribution's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastreg.config.convert import ConfigError, Section
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.manifests import Manifest


@dataclass(frozen=True, slots=True)
class ManifestURLs:
    """The URL rules; the default is Distribution's: on, with no list (no URL accepted)."""

    enabled: bool = True
    allow: re.Pattern[str] | None = None
    deny: re.Pattern[str] | None = None

    def refusal(self, url: str) -> str | None:
        """Why ``url`` may not stand in a manifest, or None when it may."""
        if not self.enabled:
            return None
        if self.allow is None and self.deny is None:
            return "no URL is allowed without validation.manifests.urls.allow"
        if self.allow is not None and self.allow.search(url) is None:
            return "the URL matches no validation.manifests.urls.allow expression"
        if self.deny is not None and self.deny.search(url) is not None:
            return "the URL matches a validation.manifests.urls.deny expression"
        return None

    def check(self, manifest: Manifest) -> None:
        """Raise MANIFEST_BLOB_UNKNOWN for the first layer carrying a URL that is refused."""
        for layer in manifest.url_layers:
            for url in layer.urls or ():
                reason = self.refusal(url)
                if reason is not None:
                    raise RegistryError(
                        ErrorCode.MANIFEST_BLOB_UNKNOWN,
                        f"layer URL refused: {reason}: {url}",
                        detail={"digest": str(layer.digest), "url": url},
                    )


def _union(section: Section, key: str) -> re.Pattern[str] | None:
    """The expressions of one list as one pattern (Distribution joins `(?:a)|(?:b)`)."""
    expressions = section.strlist(key)
    if not expressions:
        return None
    for i, expression in enumerate(expressions):
        try:
            re.compile(expression)
        except re.error as exc:
            raise ConfigError(f"{section.key(key)}[{i}]: invalid expression {expression!r}: {exc}") from None
    return re.compile("|".join(f"(?:{e})" for e in expressions))


def parse(raw: Any) -> ManifestURLs:
    """The `validation` section (absent: the rules on, refusing every URL)."""
    validation = Section(raw, "validation")
    enabled = validation.flag("enabled") or not validation.flag("disabled")
    urls = validation.section("manifests").section("urls")
    return ManifestURLs(enabled, _union(urls, "allow"), _union(urls, "deny"))
