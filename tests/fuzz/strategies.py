"""Hypothesis strategies for what a hostile client can put in a request: names, references,
digests, numbers, ranges, query parameters, headers and bodies.

Each mixes values a well-behaved client sends with the edges that broke registries before:
names past Distribution's 255 characters, digests of the wrong length or algorithm, numbers
past Python's 4,300-digit int conversion limit or written in non-ASCII digits, Content-Encoding
on request bodies (a gzip bomb, broken deflate, br/zstd), invalid Host values, and more headers
than a default HTTP parser takes.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import zlib
from urllib.parse import quote

from hypothesis import strategies as st

COMPONENT = st.from_regex(r"[a-z0-9]{1,8}(?:(?:\.|_|__|-{1,3})[a-z0-9]{1,8}){0,2}", fullmatch=True)
VALID_NAMES = st.lists(COMPONENT, min_size=1, max_size=4).map("/".join)
TAGS = st.from_regex(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}", fullmatch=True)

ODD_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40
)  # any character: quoted into the path by `segment`


VALID_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")


def hexes(length: int) -> st.SearchStrategy[str]:
    return st.binary(min_size=(length + 1) // 2, max_size=(length + 1) // 2).map(
        lambda b: b.hex()[:length]
    )


VALID_DIGESTS = st.one_of(
    hexes(64).map(lambda h: f"sha256:{h}"), hexes(128).map(lambda h: f"sha512:{h}")
)
DIGESTS = st.one_of(
    VALID_DIGESTS,
    st.integers(0, 200).flatmap(hexes).map(lambda h: f"sha256:{h}"),  # wrong length
    hexes(64).map(lambda h: f"sha256:{h.upper()}"),
    st.sampled_from(["md5", "sha1", "sha384", "blake3", "sha256+b64u", "SHA256", "sha-256", ""])
    .flatmap(lambda alg: hexes(64).map(lambda h: f"{alg}:{h}")),
    st.sampled_from(["sha256:", ":", "sha256", "sha256::", "sha256:" + "0" * 5000, "sha256:../../x"]),
    ODD_TEXT,
)

NAMES = st.one_of(
    VALID_NAMES,
    st.just("a" * 256), st.just("a" * 300), st.just("/".join(["ab"] * 128)),  # past 255
    st.sampled_from(["A", "a//b", "a/", "/a", "-a", "a-", "a..b", "..", "a/../b", "a%2Fb",
                     "a%2e%2e", "_catalog", "a/blobs/uploads", "a b", "a\u00e9", "a:b", "a@b"]),
    ODD_TEXT,
)
REFERENCES = st.one_of(
    TAGS, st.just("t" * 129), DIGESTS, ODD_TEXT, st.sampled_from(["", ".", "..", "-a", "a:b:c"])
)
UUIDS = st.one_of(
    st.uuids().map(str), ODD_TEXT, st.sampled_from(["..", ".", "a" * 5000, "%2e%2e", "x:y"])
)

NUMBER_TEXT = st.one_of(
    st.integers(0, 10**6).map(str),
    st.integers(2**63 - 3, 2**64 + 3).map(str),
    st.integers(4290, 6000).map(lambda n: "9" * n),  # past the int conversion limit
    st.sampled_from(["-1", "1e3", " 5", "0x10", "+3", "1_000", "", "\u00b2", "\u0663", "\uff11",
                     "\U0001d7d9", "5 ", "NaN", "0" * 5000 + "1"]),
)

RANGES = st.one_of(
    st.tuples(NUMBER_TEXT, NUMBER_TEXT).map(lambda ab: f"bytes={ab[0]}-{ab[1]}"),
    st.tuples(st.integers(0, 5000), st.integers(0, 5000)).map(lambda ab: f"bytes={ab[0]}-{ab[1]}"),
    st.integers(0, 5000).map(lambda n: f"bytes=-{n}"),
    st.integers(0, 5000).map(lambda n: f"bytes={n}-"),
    st.sampled_from(["bytes=0-1,3-4", "bytes=-", "items=0-1", "bytes 0-1", "bytes=", "0-1", ""]),
    NUMBER_TEXT.map(lambda n: f"bytes=-{n}"),
)
CONTENT_RANGES = st.one_of(
    st.tuples(NUMBER_TEXT, NUMBER_TEXT).map(lambda ab: f"{ab[0]}-{ab[1]}"),
    st.tuples(st.integers(0, 10**4), st.integers(0, 10**4)).map(lambda ab: f"{ab[0]}-{ab[1]}"),
    st.tuples(NUMBER_TEXT, NUMBER_TEXT).map(lambda ab: f"bytes {ab[0]}-{ab[1]}/*"),
    st.sampled_from(["*/10", "bytes */*", "-", "5-", "-5", "bytes=0-0", ""]),
)

# Host values a server must refuse (Distribution answers 400) and ones it must take
BAD_HOST_VALUES = ("evil.example/x?", "a b", "[::1", "a@b", "a\\b", "x#y", "host:port:1", "a]b",
                   "h/")
BAD_HOSTS = st.sampled_from(BAD_HOST_VALUES)
GOOD_HOSTS = st.sampled_from(["localhost", "registry.example.com:5000", "[::1]:5000", "10.0.0.1"])
PROTOS = st.sampled_from(["http", "https", "javascript", "HTTPS", "ftp", "a b", "", "data"])

ENCODINGS = st.sampled_from(["gzip", "deflate", "br", "zstd", "x-unknown", "identity", "gzip, br"])
MEDIA_TYPES = st.sampled_from([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/json", "application/octet-stream", "text/plain", "", "a/b;c=d", "*/*",
])

#: header values http.client accepts (no CR/LF; latin-1)
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                      max_size=60)
HOSTILE_HEADERS = st.one_of(
    st.tuples(st.just("Content-Encoding"), ENCODINGS),
    st.tuples(st.just("Content-Type"), MEDIA_TYPES),
    st.tuples(st.just("Accept"), MEDIA_TYPES),
    st.tuples(st.just("Range"), RANGES),
    st.tuples(st.just("Content-Range"), CONTENT_RANGES),
    st.tuples(st.just("Host"), st.one_of(BAD_HOSTS, GOOD_HOSTS)),
    st.tuples(st.just("X-Forwarded-Proto"), PROTOS),
    st.tuples(st.just("X-Forwarded-Host"), st.one_of(BAD_HOSTS, GOOD_HOSTS)),
    st.tuples(st.just("Forwarded"), st.one_of(HEADER_TEXT, PROTOS.map(lambda p: f"proto={p}"))),
    st.tuples(st.sampled_from(["If-None-Match", "Authorization", "X-Request-Id", "User-Agent",
                               "Expect", "Accept-Encoding", "X-Fuzz"]), HEADER_TEXT),
    st.tuples(st.just("X-Request-Id"), st.just("r" * 5000)),
)


def header_padding() -> st.SearchStrategy[list[tuple[str, str]]]:
    """Headers that must change nothing: none, a few, or more than a default parser takes
    (Go's net/http, which real clients use, takes 1 MiB of them)."""
    return st.one_of(
        st.just([]),
        # not User-Agent: aiohttp's parser refuses it twice (a plain 400, tested as hostile)
        st.lists(st.tuples(st.sampled_from(["X-Fuzz", "X-Trace"]), HEADER_TEXT), max_size=4),
        st.lists(HEADER_TEXT, max_size=1).map(lambda v: [("User-Agent", t) for t in v]),
        st.integers(100, 300).map(lambda n: [(f"X-Pad-{i}", "x" * 20) for i in range(n)]),
        st.just([("X-Big", "b" * 16000)]),
    )


BODIES = st.one_of(
    st.none(),
    st.binary(max_size=2048),
    st.binary(max_size=2048).map(gzip.compress),
    st.integers(1, 4).map(lambda n: gzip.compress(b"\0" * (n << 20))),  # 1-4 MiB from ~1-4 KiB
    st.binary(min_size=1, max_size=64).map(lambda b: b"\x78\x9c" + b),  # broken deflate
    st.binary(max_size=512).map(lambda b: zlib.compress(b)),
    st.sampled_from([b"{}", b"[]", b"null", b'{"schemaVersion":2}', b'{"errors":[]}']),
)


def segment(text: str) -> str:
    """A path segment as a client would send it: percent-encoded where the URL needs it, with
    '/', ':' and '%' left as they are so names keep their slashes and pre-encoded escapes."""
    return quote(text, safe="/:%@!$&'()*+,;=-._~")


def query_string(pairs: list[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe=':')}" for k, v in pairs)


QUERY_KEYS = st.sampled_from(
    ["n", "last", "digest", "mount", "from", "tag", "artifactType", "digest-algorithm", "_state",
     "x"]
)
QUERY = st.lists(
    st.tuples(QUERY_KEYS, st.one_of(NUMBER_TEXT, DIGESTS, NAMES, REFERENCES, ODD_TEXT)),
    max_size=4,
)
METHODS = st.sampled_from(["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "TRACE",
                           "FUZZ"])


@st.composite
def hostile_paths(draw: st.DrawFn) -> str:
    """A path on one of the API's routes (or next to them) with hostile parameters."""
    name = segment(draw(NAMES)) or "x"
    template = draw(st.sampled_from([
        "/v2/", "/v2", "/v2/_catalog", "/v2/{name}/tags/list", "/v2/{name}/manifests/{ref}",
        "/v2/{name}/blobs/{digest}", "/v2/{name}/blobs/uploads/", "/v2/{name}/blobs/uploads",
        "/v2/{name}/blobs/uploads/{uuid}", "/v2/{name}/referrers/{digest}", "/v2/{odd}",
        "/{odd}", "/v2/{name}/{odd}",
    ]))
    return template.format(
        name=name,
        ref=segment(draw(REFERENCES)).replace("/", "%2F") or "x",
        digest=segment(draw(DIGESTS)).replace("/", "%2F") or "x",
        uuid=segment(draw(UUIDS)).replace("/", "%2F") or "x",
        odd=segment(draw(ODD_TEXT)),
    ) + query_string(draw(QUERY))


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
