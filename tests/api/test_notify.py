"""Notifications end to end: create_app() with endpoints pointing at a real HTTP listener on
127.0.0.1, events in Distribution's envelope, filters, headers, ordering, retries and the spool."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from fastreg.notify.service import NOTIFIER
from fastreg.notify.sinks import EVENTS_MEDIA_TYPE, endpoint_dirname
from fastreg.notify.spool import Spool
from tests.api.conftest import MakeClient
from tests.api.helpers import (
    OCI_LAYER,
    OCI_MANIFEST,
    location,
    open_upload,
    push_blob,
    push_image,
    sha256,
)

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def driver_name() -> str:
    return "filesystem"  # events do not depend on the driver; one is enough


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Listener:
    """A notification endpoint: records every POST (path, headers, envelope)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.posts: list[tuple[str, list[tuple[str, str]], dict[str, Any]]] = []
        self.status = 200
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Event()

    def url(self, path: str = "/events") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.posts.append((request.path, list(request.headers.items()), body))
        self._arrived.set()
        return web.Response(status=self.status)

    async def start(self) -> Listener:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def events(self, path: str | None = None) -> list[dict[str, Any]]:
        return [e for p, _, body in self.posts if path in (None, p) for e in body["events"]]

    async def wait(self, count: int, path: str | None = None, timeout: float = 10) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.events(path)) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{len(self.events(path))} of {count} events: {self.events(path)}"
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                pass
        return self.events(path)


@pytest.fixture
async def listener() -> Any:
    server = await Listener().start()
    yield server
    await server.stop()


def endpoint(url: str, **extra: Any) -> dict[str, Any]:
    return {"name": extra.pop("name", "main"), "url": url, "timeout": "2s", "threshold": 2,
            "backoff": "100ms", **extra}


def notify_config(tmp_path: Path, *endpoints: dict[str, Any]) -> dict[str, Any]:
    return {"endpoints": list(endpoints), "spool": {"directory": str(tmp_path / "spool")}}


async def test_envelope_of_push_and_pull(
    make_client: MakeClient, listener: Listener, tmp_path: Path
) -> None:
    # the test client's peer is 127.0.0.1: trusted, its X-Forwarded-For names the client
    client = await make_client(notifications=notify_config(tmp_path, endpoint(listener.url())),
                               http__trustedproxies=["127.0.0.1/32"])  # fmt: skip
    layer = b"layer-bytes" * 100
    digest, manifest = await push_image(client, "team/app", "v1", [layer])
    head = await client.head("/v2/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert head.status == 200  # HEAD: no event
    resp = await client.get("/v2/team/app/manifests/v1", headers={
        "Accept": OCI_MANIFEST, "User-Agent": "docker/24.0", "X-Forwarded-For": "10.1.2.3"})
    assert resp.status == 200
    assert (await client.get(f"/v2/team/app/blobs/{sha256(layer)}")).status == 200
    events = await listener.wait(5)
    await asyncio.sleep(0.1)
    assert len(listener.events()) == 5
    _, headers, body = listener.posts[0]
    assert dict(headers)["Content-Type"] == EVENTS_MEDIA_TYPE == (
        "application/vnd.docker.distribution.events.v1+json")
    assert set(body) == {"events"}
    actions = [(e["action"], e["target"].get("mediaType"), e["target"].get("tag")) for e in events]
    assert actions == [
        ("push", "application/octet-stream", None),  # config
        ("push", "application/octet-stream", None),  # layer
        ("push", OCI_MANIFEST, "v1"),
        ("pull", OCI_MANIFEST, "v1"),
        ("pull", "application/octet-stream", None),
    ]
    push, pull, blob_pull = events[2], events[3], events[4]
    assert push["target"] == {
        "mediaType": OCI_MANIFEST,
        "size": len(manifest),
        "digest": digest,
        "length": len(manifest),
        "repository": "team/app",
        "url": push["target"]["url"],
        "tag": "v1",
    }
    assert push["target"]["url"].endswith(f"/v2/team/app/manifests/{digest}")
    assert blob_pull["target"]["size"] == blob_pull["target"]["length"] == len(layer)
    assert blob_pull["target"]["digest"] == sha256(layer)
    assert blob_pull["target"]["url"].endswith(f"/v2/team/app/blobs/{sha256(layer)}")
    assert events[1]["target"]["size"] == len(layer)
    for event in events:
        assert set(event) == {"id", "timestamp", "action", "target", "request", "actor", "source"}
        assert RFC3339.match(event["timestamp"]), event["timestamp"]
        assert set(event["request"]) == {"id", "addr", "host", "method", "useragent"}
        assert event["request"]["id"]
        assert set(event["source"]) == {"addr", "instanceID"}
    assert len({e["id"] for e in events}) == 5
    assert len({e["source"]["instanceID"] for e in events}) == 1
    assert pull["request"]["method"] == "GET"
    assert pull["request"]["useragent"] == "docker/24.0"
    assert pull["request"]["addr"] == "10.1.2.3"
    assert push["request"]["method"] == "PUT"
    assert re.match(r"^127\.0\.0\.1:\d+$", push["request"]["addr"])


async def test_chunked_upload_mount_tags_and_deletes(
    make_client: MakeClient, listener: Listener, tmp_path: Path
) -> None:
    client = await make_client(notifications=notify_config(tmp_path, endpoint(listener.url())))
    data = b"x" * 5000
    url = await open_upload(client, "src")
    resp = await client.patch(url, data=data[:3000], headers={"Content-Range": "0-2999"})
    resp = await client.put(location(resp), params={"digest": sha256(data)}, data=data[3000:])
    assert resp.status == 201
    resp = await client.post("/v2/dst/blobs/uploads/", params={"mount": sha256(data), "from": "src"})
    assert resp.status == 201
    config = b'{"os":"linux"}'
    await push_blob(client, "dst", config)
    manifest = orjson.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(data), "size": len(data)}],
    })
    resp = await client.put(f"/v2/dst/manifests/{sha256(manifest)}", params=[("tag", "a"),
                            ("tag", "b")], data=manifest, headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 201
    assert (await client.delete("/v2/dst/manifests/a")).status == 202
    assert (await client.delete(f"/v2/dst/manifests/{sha256(manifest)}")).status == 202
    assert (await client.delete(f"/v2/dst/blobs/{sha256(data)}")).status == 202
    assert (await client.get("/v2/dst/manifests/nope")).status == 404  # failures: no event
    events = await listener.wait(8)
    await asyncio.sleep(0.1)
    events = listener.events()
    summary = [(e["action"], e["target"]["repository"], e["target"].get("tag"),
                e["target"].get("digest")) for e in events]
    assert summary == [
        ("push", "src", None, sha256(data)),
        ("mount", "dst", None, sha256(data)),
        ("push", "dst", None, sha256(config)),
        ("push", "dst", "a", sha256(manifest)),
        ("push", "dst", "b", sha256(manifest)),
        ("delete", "dst", "a", None),
        ("delete", "dst", None, sha256(manifest)),
        ("delete", "dst", None, sha256(data)),
    ]
    assert events[0]["target"]["size"] == 5000
    assert events[1]["target"]["fromRepository"] == "src"
    assert events[1]["target"]["size"] == 5000


async def test_ordering_per_repository(
    make_client: MakeClient, listener: Listener, tmp_path: Path
) -> None:
    client = await make_client(notifications=notify_config(
        tmp_path, endpoint(listener.url(), ignore={"actions": ["pull"]})))
    config = b'{"os":"linux"}'
    for repo in ("one", "two"):
        await push_blob(client, repo, config)
    body = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
            "size": len(config)}
    manifest = orjson.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": body,
                             "layers": []})

    async def tag_all(repo: str) -> None:
        for i in range(15):
            resp = await client.put(f"/v2/{repo}/manifests/t{i:02d}", data=manifest,
                                    headers={"Content-Type": OCI_MANIFEST})
            assert resp.status == 201

    await asyncio.gather(tag_all("one"), tag_all("two"))
    events = await listener.wait(32)
    for repo in ("one", "two"):
        tags = [e["target"]["tag"] for e in events
                if e["target"]["repository"] == repo and e["target"].get("tag")]
        assert tags == [f"t{i:02d}" for i in range(15)]


async def test_filters_disabled_endpoints_and_headers(
    make_client: MakeClient, listener: Listener, tmp_path: Path
) -> None:
    client = await make_client(notifications=notify_config(
        tmp_path,
        endpoint(listener.url("/no-manifests"), name="a", ignore={"mediatypes": [OCI_MANIFEST]}),
        endpoint(listener.url("/no-blobs"), name="b",
                 ignoredmediatypes=["application/octet-stream"]),
        endpoint(listener.url("/no-pulls"), name="c", ignore={"actions": ["pull"]},
                 headers={"Authorization": ["Bearer listener-token"], "X-Tag": ["1", "2"]}),
        endpoint(listener.url("/off"), name="d", disabled=True),
    ))
    await push_image(client, "f", "v1", [b"layer"])
    assert (await client.get("/v2/f/manifests/v1", headers={"Accept": OCI_MANIFEST})).status == 200
    await listener.wait(2, "/no-manifests")  # 2 blob pushes
    await listener.wait(2, "/no-blobs")  # manifest push + pull
    await listener.wait(3, "/no-pulls")  # blob pushes + manifest push
    await asyncio.sleep(0.2)
    assert {e["target"]["mediaType"] for e in listener.events("/no-manifests")} == {
        "application/octet-stream"}
    assert [e["action"] for e in listener.events("/no-blobs")] == ["push", "pull"]
    assert {e["action"] for e in listener.events("/no-pulls")} == {"push"}
    assert listener.events("/off") == []
    for path, headers, _ in listener.posts:
        sent = [(k.lower(), v) for k, v in headers if k.lower() in ("authorization", "x-tag")]
        if path == "/no-pulls":
            assert sent == [("authorization", "Bearer listener-token"), ("x-tag", "1"),
                            ("x-tag", "2")]
        else:
            assert sent == []
    stats = client.app[NOTIFIER].stats()["endpoints"]
    assert set(stats) == {"a", "b", "c"}
    assert stats["a"]["filtered"] == 2 and stats["c"]["filtered"] == 1


async def test_retry_after_listener_was_down(make_client: MakeClient, tmp_path: Path) -> None:
    down = Listener()  # nothing listens on its port yet
    client = await make_client(notifications=notify_config(tmp_path, endpoint(down.url())))
    digest = await push_blob(client, "r", b"while the listener is down")
    stats = client.app[NOTIFIER].stats()["endpoints"]["main"]
    deadline = time.monotonic() + 5
    while stats["errors"] < 3:  # immediate retries, then the breaker's backoff
        assert time.monotonic() < deadline, stats
        await asyncio.sleep(0.05)
        stats = client.app[NOTIFIER].stats()["endpoints"]["main"]
    assert stats["pending"] == 1 and stats["delivered"] == 0
    await down.start()
    try:
        (event,) = await down.wait(1)
        assert event["target"]["digest"] == digest
        await asyncio.sleep(0.1)
        assert client.app[NOTIFIER].stats()["endpoints"]["main"]["pending"] == 0
    finally:
        await down.stop()


async def test_listener_errors_are_retried_until_accepted(
    make_client: MakeClient, listener: Listener, tmp_path: Path
) -> None:
    listener.status = 503
    client = await make_client(notifications=notify_config(tmp_path, endpoint(listener.url())))
    await push_blob(client, "r", b"rejected at first")
    await listener.wait(3)
    listener.status = 202
    deadline = time.monotonic() + 5
    while client.app[NOTIFIER].stats()["endpoints"]["main"]["delivered"] != 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    stats = client.app[NOTIFIER].stats()["endpoints"]["main"]
    assert stats["failures"] >= 3 and stats["statuses"]["503 Service Unavailable"] >= 3


async def test_events_survive_a_restart_and_orphans_are_adopted(
    make_client: MakeClient, tmp_path: Path
) -> None:
    down = Listener()
    settings = notify_config(tmp_path, endpoint(down.url()))
    first = await make_client(notifications=settings)
    digest = await push_blob(first, "kept", b"spooled while down")
    await first.close()  # the process stops with the event undelivered
    # a spool left by a worker that no longer exists (fewer workers than before)
    orphan = Spool(str(tmp_path / "spool" / "worker-7" / endpoint_dirname("main")), 1 << 20)
    orphan.open()
    orphan.append([orjson.dumps({"id": "orphan", "action": "push", "target": {}})])
    orphan.close()
    await down.start()
    try:
        second = await make_client(notifications=settings)
        events = await down.wait(2)
        assert {e["id"] for e in events} >= {"orphan"}
        assert digest in {e["target"].get("digest") for e in events}
        assert second.app[NOTIFIER].stats()["spool"].endswith("worker-0")
    finally:
        await down.stop()


async def test_spool_bound_drops_and_counts(
    make_client: MakeClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    down = Listener()
    settings = notify_config(tmp_path, endpoint(down.url()))
    settings["spool"]["maxbytes"] = 4096
    client = await make_client(notifications=settings)
    for i in range(12):
        await push_blob(client, "full", b"blob %d" % i)
    stats = client.app[NOTIFIER].stats()["endpoints"]["main"]
    assert stats["dropped"] > 0
    assert stats["pending"] + stats["dropped"] == 12
    assert stats["spooled_bytes"] <= 4096
    assert any(r.getMessage() == "notification events dropped" for r in caplog.records)


async def test_no_endpoints_no_middleware(make_client: MakeClient) -> None:
    client = await make_client(notifications={"endpoints": [
        {"name": "x", "url": "http://127.0.0.1:9/", "disabled": True}]})
    assert NOTIFIER not in client.app
    await push_blob(client, "quiet", b"nothing to send")


async def test_events_name_the_authenticated_actor(
    make_client: MakeClient, listener: Listener, tmp_path: Path
) -> None:
    from tests.api.test_auth_htpasswd import basic
    from tests.auth.tokens import write_htpasswd

    path = write_htpasswd(tmp_path / "htpasswd", {"alice": "wonderland"})
    client = await make_client(
        notifications=notify_config(tmp_path, endpoint(listener.url())),
        auth__htpasswd__realm="test", auth__htpasswd__path=path,
    )
    blob = b"actor-blob"
    resp = await client.post(
        "/v2/team/actor/blobs/uploads/", params={"digest": sha256(blob)}, data=blob,
        headers=basic("alice", "wonderland"),
    )
    assert resp.status == 201
    events = await listener.wait(1)
    assert events[0]["actor"] == {"name": "alice"}
