"""A property-based fuzz of the whole API against a real `fastreg serve` process (issue 12).

Every answer must have the properties in `wire.check_reply` (no 5xx but a deliberate 503, the
OCI error body on every API error, no traceback, a sane Location) and leave no error or traceback
in the server's log (`wire.check_log`). `test_hostile_requests` throws one hostile request at a
time at every route. `RegistryModel` mixes a real client's operations, whose answers it predicts
exactly from a model of the repositories (so a body stored other than as sent, a wrong range or a
blob under the wrong digest is caught), with hostile variants of them on real uploads, blobs and
repositories; after each run the storage is walked with `tests.storage_check`.
"""

from __future__ import annotations

import gzip
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.fuzz import strategies as fs
from tests.fuzz.wire import Headers, Reply, Request, Wire
from tests.storage_check import V2, blob_path, check_storage

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
CONFIG_TYPES = {OCI_MANIFEST: "application/vnd.oci.image.config.v1+json",
                DOCKER_MANIFEST: "application/vnd.docker.container.image.v1+json"}
LAYER_TYPES = {OCI_MANIFEST: "application/vnd.oci.image.layer.v1.tar+gzip",
               DOCKER_MANIFEST: "application/vnd.docker.image.rootfs.diff.tar.gzip"}
INDEX_OF = {OCI_MANIFEST: OCI_INDEX, DOCKER_MANIFEST: DOCKER_LIST}
ALL_TYPES = f"{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST}"

#: repositories of the model, under a prefix per run; hostile names never start with it
REPO_SUFFIXES = st.sampled_from(["a", "b/c", "d-e.f/g__h"])
PICK = st.integers(0, 1 << 16)
_RUNS = itertools.count()


@given(
    method=fs.METHODS,
    path=fs.hostile_paths(),
    headers=st.lists(fs.HOSTILE_HEADERS, max_size=4),
    padding=fs.header_padding(),
    body=fs.BODIES,
    chunked=st.booleans(),
)
def test_hostile_requests(
    wire: Wire,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    padding: list[tuple[str, str]],
    body: bytes | None,
    chunked: bool,
) -> None:
    """One hostile request at a time on any route: the properties of `wire.send` hold, and a
    Host no server should accept is 400. Each example starts on a new connection."""
    wire.close()
    reply = wire.send(Request(method, path, [*headers, *padding], body, chunked and body is not None))
    hosts = [v for k, v in headers if k == "Host"]
    if len(hosts) == 1 and hosts[0] in fs.BAD_HOST_VALUES:
        assert reply.status == 400, f"Host {hosts[0]!r} answered {reply.status}"


def _int64_text(text: str) -> bool:
    """What the server takes as a number: ASCII digits within int64 (Go's ParseInt)."""
    return text.isascii() and text.isdigit() and len(text) <= 19 and int(text) < 2**63


@dataclass
class Upload:
    repo: str
    path: str
    data: bytearray = field(default_factory=bytearray)


@dataclass(frozen=True)
class Pushed:
    media_type: str
    raw: bytes
    children: tuple[str, ...]  # digests of the manifests an index names


def location_path(reply: Reply) -> str:
    location = reply.header("Location")
    assert location, f"no Location in {reply}"
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


class RegistryModel(RuleBasedStateMachine):
    """What a registry holds after a client's operations, and the answers it must give."""

    wire: Wire
    root: Path

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"fz{next(_RUNS)}"
        self.blobs: dict[str, dict[str, bytes]] = {}  # repo -> linked digest -> bytes
        self.uploads: list[Upload] = []
        self.manifests: dict[str, dict[str, Pushed]] = {}  # repo -> digest -> manifest
        self.tags: dict[str, dict[str, str]] = {}  # repo -> tag -> digest

    # -- helpers -------------------------------------------------------------------------

    def repo(self, suffix: str) -> str:
        return f"{self.prefix}/{suffix}"

    def send(self, method: str, path: str, headers: Headers = (), body: bytes | None = None,
             chunked: bool = False) -> Reply:
        req = Request(method, path, headers, body, chunked)
        note(str(req))
        reply = self.wire.send(req)
        note(f"  -> {reply.status} {reply.body[:200]!r}")
        return reply

    def expect(self, reply: Reply, status: int, code: str | None = None) -> None:
        assert reply.status == status, f"expected {status}, got {reply.status} {reply.body[:500]!r}"
        if code is not None:
            assert code in reply.error_codes(), f"expected {code}, got {reply.body[:500]!r}"

    def linked(self, pick: int) -> tuple[str, str, bytes] | None:
        pairs = sorted((r, d) for r, blobs in self.blobs.items() for d in blobs)
        if not pairs:
            return None
        repo, digest = pairs[pick % len(pairs)]
        return repo, digest, self.blobs[repo][digest]

    def pushed(self, pick: int) -> tuple[str, str] | None:
        pairs = sorted((r, d) for r, ms in self.manifests.items() for d in ms)
        return pairs[pick % len(pairs)] if pairs else None

    def has_blobs(self) -> bool:
        return any(self.blobs.values())

    def has_uploads(self) -> bool:
        return bool(self.uploads)

    def has_manifests(self) -> bool:
        return any(self.manifests.values())

    def forget_upload(self, upload: Upload) -> None:
        """After a hostile request on an upload its bytes are unknown: cancel it."""
        self.uploads.remove(upload)
        reply = self.send("DELETE", upload.path)
        assert reply.status in (204, 404), reply

    # -- blobs and uploads ---------------------------------------------------------------

    @initialize(suffix=REPO_SUFFIXES, data=st.binary(min_size=1, max_size=512))
    def seed(self, suffix: str, data: bytes) -> None:
        self.push_monolithic(suffix, data, [])

    @rule(suffix=REPO_SUFFIXES, data=st.binary(max_size=4096), padding=fs.header_padding())
    def push_monolithic(self, suffix: str, data: bytes, padding: list[tuple[str, str]]) -> None:
        repo, digest = self.repo(suffix), fs.sha256(data)
        reply = self.send("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", padding, data)
        self.expect(reply, 201)
        assert reply.header("Docker-Content-Digest") == digest
        assert location_path(reply) == f"/v2/{repo}/blobs/{digest}"
        self.blobs.setdefault(repo, {})[digest] = data

    @rule(suffix=REPO_SUFFIXES, padding=fs.header_padding())
    def start_upload(self, suffix: str, padding: list[tuple[str, str]]) -> None:
        repo = self.repo(suffix)
        reply = self.send("POST", f"/v2/{repo}/blobs/uploads/", padding)
        self.expect(reply, 202)
        assert reply.header("Range") == "0-0" and reply.header("Docker-Upload-UUID")
        path = location_path(reply)
        assert path.startswith(f"/v2/{repo}/blobs/uploads/"), path
        self.uploads.append(Upload(repo, path))

    @precondition(has_uploads)
    @rule(
        pick=PICK,
        chunk=st.binary(min_size=1, max_size=4096),
        ranged=st.booleans(),
        chunked=st.booleans(),
        encoding=st.one_of(st.none(), fs.ENCODINGS),
        compress=st.booleans(),
    )
    def patch(self, pick: int, chunk: bytes, ranged: bool, chunked: bool, encoding: str | None,
              compress: bool) -> None:
        """A chunk in order: stored exactly as sent, whatever its Content-Encoding says."""
        upload = self.uploads[pick % len(self.uploads)]
        body = gzip.compress(chunk) if compress else chunk
        headers = [("Content-Type", "application/octet-stream")]
        start = len(upload.data)
        if ranged:
            headers.append(("Content-Range", f"{start}-{start + len(body) - 1}"))
        if encoding is not None:
            headers.append(("Content-Encoding", encoding))
        reply = self.send("PATCH", upload.path, headers, body, chunked)
        self.expect(reply, 202)
        upload.data += body
        assert reply.header("Range") == f"0-{len(upload.data) - 1}", reply.headers

    @precondition(has_uploads)
    @rule(pick=PICK, chunk=st.binary(min_size=1, max_size=64), shift=st.integers(1, 10**6))
    def patch_out_of_order(self, pick: int, chunk: bytes, shift: int) -> None:
        upload = self.uploads[pick % len(self.uploads)]
        start = len(upload.data) + shift
        headers = [("Content-Range", f"{start}-{start + len(chunk) - 1}")]
        self.expect(self.send("PATCH", upload.path, headers, chunk), 416, "RANGE_INVALID")

    @precondition(has_uploads)
    @rule(pick=PICK, crange=fs.CONTENT_RANGES, body=fs.BODIES, chunked=st.booleans())
    def patch_hostile(self, pick: int, crange: str, body: bytes | None, chunked: bool) -> None:
        upload = self.uploads[pick % len(self.uploads)]
        self.send("PATCH", upload.path, [("Content-Range", crange)], body, chunked and bool(body))
        self.forget_upload(upload)

    @precondition(has_uploads)
    @rule(pick=PICK, tail=st.binary(max_size=1024), ranged=st.booleans())
    def finish(self, pick: int, tail: bytes, ranged: bool) -> None:
        upload = self.uploads.pop(pick % len(self.uploads))
        data = bytes(upload.data) + tail
        digest = fs.sha256(data)
        headers = []
        if ranged and tail:
            headers.append(("Content-Range", f"{len(upload.data)}-{len(data) - 1}"))
        reply = self.send("PUT", f"{upload.path}{self.sep(upload)}digest={digest}", headers,
                          tail or None)
        self.expect(reply, 201)
        assert reply.header("Docker-Content-Digest") == digest
        self.blobs.setdefault(upload.repo, {})[digest] = data
        self.expect(self.send("GET", upload.path), 404, "BLOB_UPLOAD_UNKNOWN")

    @precondition(has_uploads)
    @rule(pick=PICK, digest=st.one_of(fs.DIGESTS, st.just("other")), tail=st.binary(max_size=64))
    def finish_wrong_digest(self, pick: int, digest: str, tail: bytes) -> None:
        """A digest the bytes do not have (another blob's, too): no blob appears under it, and
        the upload is gone; a digest that is not one leaves the upload as it was."""
        upload = self.uploads[pick % len(self.uploads)]
        data = bytes(upload.data) + tail
        if digest == "other":
            known = self.linked(pick)
            digest = known[1] if known else fs.sha256(b"other" + data)
        if digest == fs.sha256(data):
            digest = fs.sha256(data + b"!")
        reply = self.send("PUT", f"{upload.path}{self.sep(upload)}digest={quote(digest, safe=':')}",
                          (), tail or None)
        self.expect(reply, 400, "DIGEST_INVALID")
        if fs.VALID_DIGEST_RE.fullmatch(digest):
            self.uploads.remove(upload)
            self.expect(self.send("GET", upload.path), 404, "BLOB_UPLOAD_UNKNOWN")
        else:
            self.expect(self.send("GET", upload.path), 204)
            if tail:  # whether a rejected digest consumed the body is not the model's business
                self.forget_upload(upload)

    @staticmethod
    def sep(upload: Upload) -> str:
        return "&" if "?" in upload.path else "?"

    @precondition(has_uploads)
    @rule(pick=PICK)
    def upload_status(self, pick: int) -> None:
        upload = self.uploads[pick % len(self.uploads)]
        reply = self.send("GET", upload.path)
        self.expect(reply, 204)
        assert reply.header("Range") == f"0-{max(len(upload.data) - 1, 0)}"

    @precondition(has_uploads)
    @rule(pick=PICK)
    def cancel(self, pick: int) -> None:
        upload = self.uploads.pop(pick % len(self.uploads))
        self.expect(self.send("DELETE", upload.path), 204)
        self.expect(self.send("GET", upload.path), 404, "BLOB_UPLOAD_UNKNOWN")

    @precondition(has_blobs)
    @rule(pick=PICK, suffix=REPO_SUFFIXES)
    def mount(self, pick: int, suffix: str) -> None:
        source, digest, data = self.linked(pick)  # type: ignore[misc]
        target = self.repo(suffix)
        reply = self.send("POST", f"/v2/{target}/blobs/uploads/?mount={digest}&from={source}")
        self.expect(reply, 201)
        assert location_path(reply) == f"/v2/{target}/blobs/{digest}"
        self.blobs.setdefault(target, {})[digest] = data

    @rule(suffix=REPO_SUFFIXES, source=fs.NAMES, digest=fs.DIGESTS)
    def mount_hostile(self, suffix: str, source: str, digest: str) -> None:
        """A mount with any `from` (300 characters, odd ones) and any digest: never a 5xx, and
        a mount that did not happen opens an upload."""
        target = self.repo(suffix)
        query = fs.query_string([("mount", digest), ("from", source)])
        reply = self.send("POST", f"/v2/{target}/blobs/uploads/{query}")
        if reply.status == 202:
            self.uploads.append(Upload(target, location_path(reply)))
        elif reply.status == 201:
            known = next((b[digest] for b in self.blobs.values() if digest in b), None)
            assert known is not None, f"mounted {digest}, which was never pushed"
            self.blobs.setdefault(target, {})[digest] = known

    @precondition(has_blobs)
    @rule(pick=PICK, wanted=st.one_of(st.none(), fs.RANGES), head=st.booleans())
    def get_blob(self, pick: int, wanted: str | None, head: bool) -> None:
        """The bytes under a digest are the bytes pushed, for any Range asked."""
        repo, digest, data = self.linked(pick)  # type: ignore[misc]
        headers = [("Range", wanted)] if wanted is not None else []
        reply = self.send("HEAD" if head else "GET", f"/v2/{repo}/blobs/{digest}", headers)
        assert reply.status in (200, 206, 416), reply
        if head:
            assert reply.status == 200 and reply.header("Content-Length") == str(len(data))
        elif reply.status == 200:
            assert reply.body == data
        elif reply.status == 206:
            sent = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", reply.header("Content-Range") or "")
            assert sent and int(sent[1]) <= int(sent[2]) < len(data), reply.headers
            assert int(sent[3]) == len(data) and reply.body == data[int(sent[1]) : int(sent[2]) + 1]

    @precondition(has_blobs)
    @rule(pick=PICK)
    def delete_blob(self, pick: int) -> None:
        repo, digest, _ = self.linked(pick)  # type: ignore[misc]
        self.expect(self.send("DELETE", f"/v2/{repo}/blobs/{digest}"), 202)
        del self.blobs[repo][digest]
        self.expect(self.send("GET", f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")

    # -- manifests and tags --------------------------------------------------------------

    @precondition(has_blobs)
    @rule(
        pick=PICK,
        kind=st.sampled_from([OCI_MANIFEST, DOCKER_MANIFEST]),
        layers=st.lists(PICK, max_size=3),
        tag=st.one_of(st.none(), fs.TAGS),
        missing=st.booleans(),
    )
    def push_image(self, pick: int, kind: str, layers: list[int], tag: str | None,
                   missing: bool) -> None:
        """An image manifest over blobs of its repository; one naming a blob the repository
        does not have is MANIFEST_BLOB_UNKNOWN."""
        repo, config, _ = self.linked(pick)  # type: ignore[misc]
        blobs = sorted(self.blobs[repo].items())
        chosen = [blobs[i % len(blobs)] for i in layers]
        descriptors = [{"mediaType": LAYER_TYPES[kind], "digest": d, "size": len(b)}
                       for d, b in chosen]
        if missing:
            absent = fs.sha256(b"absent" + repo.encode() + config.encode())
            descriptors.append({"mediaType": LAYER_TYPES[kind], "digest": absent, "size": 6})
        doc = {
            "schemaVersion": 2,
            "mediaType": kind,
            "config": {"mediaType": CONFIG_TYPES[kind], "digest": config,
                       "size": len(self.blobs[repo][config])},
            "layers": descriptors,
        }
        self.put_manifest(repo, kind, json.dumps(doc).encode(), tag, (), missing)

    @precondition(has_manifests)
    @rule(pick=PICK, children=st.lists(PICK, min_size=1, max_size=3),
          tag=st.one_of(st.none(), fs.TAGS))
    def push_index(self, pick: int, children: list[int], tag: str | None) -> None:
        repo, _ = self.pushed(pick)  # type: ignore[misc]
        images = sorted((d, m) for d, m in self.manifests[repo].items() if m.media_type in INDEX_OF)
        if not images:
            return
        chosen = [images[i % len(images)] for i in children]
        kind = INDEX_OF[chosen[0][1].media_type]
        doc = {
            "schemaVersion": 2,
            "mediaType": kind,
            "manifests": [
                {"mediaType": m.media_type, "digest": d, "size": len(m.raw),
                 "platform": {"architecture": "amd64", "os": "linux"}}
                for d, m in chosen
            ],
        }
        self.put_manifest(repo, kind, json.dumps(doc).encode(), tag, tuple(d for d, _ in chosen))

    def put_manifest(self, repo: str, kind: str, raw: bytes, tag: str | None,
                     children: tuple[str, ...], missing: bool = False) -> None:
        digest = fs.sha256(raw)
        reference = tag or digest
        reply = self.send("PUT", f"/v2/{repo}/manifests/{reference}", [("Content-Type", kind)], raw)
        if missing:
            self.expect(reply, 400, "MANIFEST_BLOB_UNKNOWN")
            return
        self.expect(reply, 201)
        assert reply.header("Docker-Content-Digest") == digest
        self.manifests.setdefault(repo, {})[digest] = Pushed(kind, raw, children)
        if tag:
            self.tags.setdefault(repo, {})[tag] = digest

    @rule(suffix=REPO_SUFFIXES, reference=fs.REFERENCES, content_type=fs.MEDIA_TYPES,
          body=fs.BODIES)
    def push_hostile_manifest(self, suffix: str, reference: str, content_type: str,
                              body: bytes | None) -> None:
        """Any body under any reference and type: a 201 only for a body the model accepts."""
        repo = self.repo(suffix)
        path = f"/v2/{repo}/manifests/{fs.segment(reference).replace('/', '%2F') or 'x'}"
        reply = self.send("PUT", path, [("Content-Type", content_type)], body)
        assert reply.status != 201, f"a hostile manifest was accepted: {reply}"

    @precondition(has_manifests)
    @rule(pick=PICK, by_tag=st.booleans(), head=st.booleans())
    def get_manifest(self, pick: int, by_tag: bool, head: bool) -> None:
        repo, digest = self.pushed(pick)  # type: ignore[misc]
        tags = sorted(t for t, d in self.tags.get(repo, {}).items() if d == digest)
        reference = tags[0] if by_tag and tags else digest
        reply = self.send("HEAD" if head else "GET", f"/v2/{repo}/manifests/{reference}",
                          [("Accept", ALL_TYPES)])
        self.expect(reply, 200)
        pushed = self.manifests[repo][digest]
        assert reply.header("Docker-Content-Digest") == digest
        assert reply.header("Content-Type") == pushed.media_type
        assert head or reply.body == pushed.raw

    @precondition(has_manifests)
    @rule(pick=PICK)
    def delete_manifest(self, pick: int) -> None:
        repo, digest = self.pushed(pick)  # type: ignore[misc]
        self.expect(self.send("DELETE", f"/v2/{repo}/manifests/{digest}"), 202)
        del self.manifests[repo][digest]
        tags = self.tags.get(repo, {})
        for tag in [t for t, d in tags.items() if d == digest]:
            del tags[tag]
        self.expect(self.send("GET", f"/v2/{repo}/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")

    @precondition(lambda self: any(self.tags.values()))
    @rule(pick=PICK)
    def delete_tag(self, pick: int) -> None:
        pairs = sorted((r, t) for r, tags in self.tags.items() for t in tags)
        repo, tag = pairs[pick % len(pairs)]
        self.expect(self.send("DELETE", f"/v2/{repo}/manifests/{tag}"), 202)
        del self.tags[repo][tag]
        self.expect(self.send("GET", f"/v2/{repo}/manifests/{tag}"), 404, "MANIFEST_UNKNOWN")

    @rule(suffix=REPO_SUFFIXES, n=st.one_of(st.none(), st.integers(0, 5), fs.NUMBER_TEXT),
          last=st.one_of(st.none(), fs.TAGS, fs.ODD_TEXT))
    def list_tags(self, suffix: str, n: int | str | None, last: str | None) -> None:
        """A page of tags: ASCII order, `n` after `last`, Link while more remain; a number
        that is not one is PAGINATION_NUMBER_INVALID."""
        repo = self.repo(suffix)
        pairs = [(k, str(v)) for k, v in (("n", n), ("last", last)) if v is not None]
        reply = self.send("GET", f"/v2/{repo}/tags/list{fs.query_string(pairs)}")
        tags = sorted(t for t in self.tags.get(repo, {}) if not last or t > last)
        if not self.tags.get(repo):  # never tagged (404) or every tag deleted (200)
            assert reply.status in (200, 400, 404), reply
            return
        if isinstance(n, str) and n != "" and not _int64_text(n):
            self.expect(reply, 400, "PAGINATION_NUMBER_INVALID")
            return
        self.expect(reply, 200)
        count = None if n in (None, "") else int(n)
        listed = reply.json()["tags"]  # type: ignore[index]
        assert listed == tags[:count], (listed, tags)
        assert (reply.header("Link") is not None) == (count is not None and len(tags) > count)

    @rule(n=st.one_of(st.none(), st.integers(0, 1001), fs.NUMBER_TEXT),
          last=st.one_of(st.none(), fs.NAMES))
    def catalog(self, n: int | str | None, last: str | None) -> None:
        pairs = [(k, str(v)) for k, v in (("n", n), ("last", last)) if v is not None]
        reply = self.send("GET", f"/v2/_catalog{fs.query_string(pairs)}")
        text = "" if n is None else str(n)
        if text and not (_int64_text(text) and int(text) <= 1000):
            self.expect(reply, 400, "PAGINATION_NUMBER_INVALID")
            return
        self.expect(reply, 200)
        listed = reply.json()["repositories"]  # type: ignore[index]
        assert listed == sorted(listed) and all(r > last for r in listed if last), listed

    # -- after every step and at the end -------------------------------------------------

    @invariant()
    def server_answers(self) -> None:
        """Whatever came before, the base endpoint still answers."""
        self.expect(self.wire.send(Request("GET", "/v2/")), 200)

    def teardown(self) -> None:
        problems = check_storage(self.root, f"{self.prefix}/")
        assert problems == [], "\n".join(problems)


def test_registry_model(wire: Wire, storage_root: Path) -> None:
    machine = type("BoundRegistryModel", (RegistryModel,), {"wire": wire, "root": storage_root})
    run_state_machine_as_test(machine)


def test_storage_check_finds_a_blob_under_a_wrong_digest(tmp_path: Path) -> None:
    """The checker itself: a blob whose bytes changed, a tag on no revision, a missing config."""
    good, bad = b"good", b"bad"
    digest = fs.sha256(good)
    blob_path(tmp_path, digest).parent.mkdir(parents=True)
    blob_path(tmp_path, digest).write_bytes(bad)
    missing = fs.sha256(b"missing")
    manifest_raw = json.dumps({"schemaVersion": 2, "config": {"digest": missing},
                               "layers": [{"digest": digest}]}).encode()
    manifest = fs.sha256(manifest_raw)
    blob_path(tmp_path, manifest).parent.mkdir(parents=True)
    blob_path(tmp_path, manifest).write_bytes(manifest_raw)
    tag = tmp_path / V2 / "repositories/r/_manifests/tags/t/current/link"
    tag.parent.mkdir(parents=True)
    tag.write_text(manifest)
    problems = "\n".join(check_storage(tmp_path))
    assert f"blob {digest} holds bytes that hash to {fs.sha256(bad)}" in problems
    assert f"references {missing}, which has no blob data" in problems
    assert "is not a revision of r" in problems
