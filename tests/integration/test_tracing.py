"""Tracing end to end: a real fastreg process (two workers) exporting with OpenTelemetry's OTLP/HTTP
exporter to a real receiver the test runs (`tests/otlp.py`), and the test reading what arrived:
a server span per request with its HTTP attributes, the storage driver's calls as its children,
the trace of an incoming W3C `traceparent` continued, the queue exported when the workers stop;
and, untraced, nothing sent and OpenTelemetry never imported by a worker."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import READY_TIMEOUT, REPO_ROOT, ServerProcess, registry_config
from tests.otlp import OTLPReceiver, ReceivedSpan
from tests.procs import free_ports

pytestmark = pytest.mark.integration

STORAGE = "io.cncf.distribution.storage."
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    otlp = OTLPReceiver().start()
    try:
        yield otlp
    finally:
        otlp.stop()


def start(
    tmp_path: Path, otel: dict[str, str], pythonpath: tuple[str, ...] = ()
) -> tuple[ServerProcess, int]:
    """fastreg --workers 2 with ``otel`` as its only OTEL_* variables, and its debug port."""
    port, debug = free_ports(2)
    cfg = tmp_path / "config.yml"
    cfg.write_text(registry_config(tmp_path / "root", port, {
        "log": {"level": "info", "formatter": "json"},
        "http": {"debug": {"addr": f"127.0.0.1:{debug}"}},
    }))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "OTEL_"))}
    env.update(otel, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join((*pythonpath, str(REPO_ROOT))))
    server = ServerProcess(
        kind="fastreg", root=tmp_path / "root", port=port, config_path=cfg,
        argv=[sys.executable, "-m", "fastreg", "serve", "--workers", "2", str(cfg)],
        env=env, log_path=tmp_path / "server.log",
    )  # fmt: skip
    server.start()
    deadline = time.monotonic() + READY_TIMEOUT
    while len(_listening(server)) < 2:  # the first one answers before the second listens
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.1)
    return server, debug


def _listening(server: ServerProcess) -> set[int]:
    lines = (json.loads(line) for line in server.output().splitlines() if line.startswith("{"))
    return {entry["pid"] for entry in lines if entry.get("msg") == "listening"}


def call(
    server: ServerProcess, method: str, path: str, body: bytes = b"", headers: dict | None = None
) -> tuple[int, bytes]:
    """One request on a connection of its own (the kernel spreads connections over workers)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"User-Agent": "trace-test/1", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def workers_vars(debug_port: int) -> dict[int, dict]:
    """/debug/vars of each worker (both share the debug port: asked until both answered)."""
    seen: dict[int, dict] = {}
    deadline = time.monotonic() + READY_TIMEOUT
    while len(seen) < 2:
        assert time.monotonic() < deadline, f"only workers {sorted(seen)} answered /debug/vars"
        conn = http.client.HTTPConnection("127.0.0.1", debug_port, timeout=5)
        try:
            conn.request("GET", "/debug/vars")
            body = json.loads(conn.getresponse().read())
        except OSError:
            time.sleep(0.1)
            continue
        finally:
            conn.close()
        seen[body["pid"]] = body
    return seen


def server_span(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.kind == "SERVER" and s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans if s.kind == "SERVER"])
    return found[0]


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_span_id == parent.span_id]


def test_requests_and_storage_calls_are_traced(tmp_path: Path, receiver: OTLPReceiver) -> None:
    # an endpoint alone turns tracing on (OTEL_TRACES_EXPORTER unset: OTLP)
    server, debug = start(tmp_path, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                              "OTEL_BSP_SCHEDULE_DELAY": "100"})
    try:
        unsampled = "0af7651916cd43dd8448eb211c80319c"
        assert call(server, "GET", "/v2/", headers={
            "traceparent": f"00-{unsampled}-b7ad6b7169203331-00"})[0] == 200
        status, _ = call(server, "GET", "/v2/", headers={
            "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        assert status == 200
        data = os.urandom(70_000)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        push = f"/v2/traced/app/blobs/uploads/?digest={digest}"
        assert call(server, "POST", push, data)[0] == 201
        pull = f"/v2/traced/app/blobs/{digest}"
        status, body = call(server, "GET", pull)
        assert (status, body) == (200, data)
        assert call(server, "GET", "/v2/traced/app/manifests/missing")[0] == 404
        for _ in range(16):  # on fresh connections: both workers answer some
            call(server, "GET", "/v2/_catalog")

        spans = receiver.wait_for(lambda got: sum(
            s.name == "GET /v2/_catalog" for s in got) == 16 and any(
            s.name == "GET /v2/traced/app/manifests/missing" for s in got))
        time.sleep(0.5)  # a span of the unsampled request, had one been made, is sent by now
        spans = receiver.received()

        # the W3C trace context: the caller's trace continued, under the caller's span
        base = next(s for s in spans if s.name == "GET /v2/" and s.trace_id == TRACE_ID)
        assert base.kind == "SERVER"
        assert (base.trace_id, base.parent_span_id) == (TRACE_ID, PARENT_ID)
        assert not [s for s in spans if s.trace_id == unsampled]  # parentbased: not sampled
        assert base.status == "UNSET"
        assert base.attributes == {
            "http.request.method": "GET", "url.path": "/v2/", "url.scheme": "http",
            "network.protocol.version": "1.1", "server.address": "127.0.0.1",
            "server.port": server.port, "network.peer.address": "127.0.0.1",
            "network.peer.port": base.attributes["network.peer.port"],
            "client.address": "127.0.0.1", "user_agent.original": "trace-test/1",
            "http.route": "/v2/", "http.response.status_code": 200,
            "http.response.body.size": 2, "fastreg.request.id": base.attributes["fastreg.request.id"],
        }  # fmt: skip
        assert base.resource["service.name"] == "distribution"  # Distribution's default name
        assert base.scope == "fastreg.server"

        # a push: its storage calls are children of its server span, in its trace
        upload = server_span(spans, "POST /v2/traced/app/blobs/uploads/")
        assert upload.trace_id != TRACE_ID
        assert upload.parent_span_id == ""  # no traceparent: a trace of its own
        assert upload.attributes["http.route"] == "/v2/{name}/blobs/uploads/"
        assert upload.attributes["http.response.status_code"] == 201
        assert upload.attributes["http.request.body.size"] == len(data)
        calls = children(spans, upload)
        names = {s.name for s in calls}
        assert {"Writer", "Commit", "Publish", "PutContent"} <= names, names
        for span in calls:
            assert span.trace_id == upload.trace_id and span.kind == "INTERNAL"
            assert span.attributes[STORAGE + "driver.name"] == "filesystem"
            assert span.scope == "fastreg.storage"
            assert span.status == "UNSET", span
        link_path = f"/docker/registry/v2/repositories/traced/app/_layers/sha256/{digest[7:]}/link"
        link = next(s for s in calls if s.attributes.get(STORAGE + "path") == link_path)
        assert link.name == "PutContent"
        assert link.attributes[STORAGE + "content.length"] == len(digest)
        published = next(s for s in calls if s.name == "Publish")
        assert published.attributes[STORAGE + "dest.path"].endswith(f"/{digest[7:]}/data")

        # a pull: the link read under it, the bytes sent counted
        download = server_span(spans, f"GET {pull}")
        assert download.attributes["http.route"] == "/v2/{name}/blobs/{digest}"
        assert download.attributes["http.response.body.size"] == len(data)
        assert "GetContent" in {s.name for s in children(spans, download)}

        # a 404 is an answer, not a server error; so is the driver's PathNotFound under it
        missing = server_span(spans, "GET /v2/traced/app/manifests/missing")
        assert missing.attributes["http.response.status_code"] == 404
        assert missing.status == "UNSET"
        assert all(s.status == "UNSET" for s in children(spans, missing))

        # every worker built its own provider (the pid is a resource attribute of each)
        assert len({s.resource["process.pid"] for s in spans
                    if s.name == "GET /v2/_catalog"}) == 2  # fmt: skip
        for info in workers_vars(debug).values():
            assert info["tracing"] == {"exporters": ["otlp"], "opentelemetry_loaded": True}
    finally:
        server.stop()


def test_spans_queued_are_exported_when_the_workers_stop(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    server, _ = start(tmp_path, {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.endpoint}/v1/traces",
        "OTEL_BSP_SCHEDULE_DELAY": "600000",  # ten minutes: only the shutdown sends
        "OTEL_SERVICE_NAME": "registry-under-test",
    })  # fmt: skip
    try:
        for _ in range(12):
            assert call(server, "GET", "/v2/")[0] == 200
        time.sleep(0.5)
        assert receiver.received() == []
    finally:
        server.stop()
    assert server.proc is not None and server.proc.returncode == 0
    spans = receiver.received()
    assert sum(s.name == "GET /v2/" for s in spans) >= 12  # and the readiness checks
    assert {s.resource["service.name"] for s in spans} == {"registry-under-test"}


@pytest.mark.parametrize(
    "otel",
    [
        {},  # nothing configured
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "{endpoint}"},
        {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp",
         "OTEL_EXPORTER_OTLP_ENDPOINT": "{endpoint}"},
        {"OTEL_SERVICE_NAME": "not-enough", "OTEL_BSP_SCHEDULE_DELAY": "50"},
    ],
    ids=["unset", "exporter-none", "sdk-disabled", "no-exporter-no-endpoint"],
)
def test_untraced_workers_send_nothing_and_never_import_opentelemetry(
    tmp_path: Path, receiver: OTLPReceiver, otel: dict[str, str]
) -> None:
    env = {k: v.format(endpoint=receiver.endpoint) for k, v in otel.items()}
    server, debug = start(tmp_path, {"OTEL_BSP_SCHEDULE_DELAY": "50", **env})
    try:
        data = os.urandom(1000)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        assert call(server, "POST", f"/v2/quiet/app/blobs/uploads/?digest={digest}", data)[0] == 201
        for _ in range(6):
            assert call(server, "GET", "/v2/", headers={
                "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})[0] == 200
        for info in workers_vars(debug).values():
            assert info["tracing"] == {"exporters": [], "opentelemetry_loaded": False}
        time.sleep(0.5)
    finally:
        server.stop()
    assert receiver.posts == 0
    assert "tracing on" not in server.output()


def test_without_the_extra_one_warning_and_the_registry_serves(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    # what an install without `fastreg[tracing]` has: an `opentelemetry` without sdk or exporter
    shadow = tmp_path / "no-otel"
    (shadow / "opentelemetry").mkdir(parents=True)
    (shadow / "opentelemetry" / "__init__.py").write_text("")
    server, debug = start(tmp_path, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                              "OTEL_BSP_SCHEDULE_DELAY": "50"}, pythonpath=(str(shadow),))
    try:
        for _ in range(4):
            assert call(server, "GET", "/v2/")[0] == 200
        for info in workers_vars(debug).values():
            assert info["tracing"]["exporters"] == []
        time.sleep(0.5)
    finally:
        server.stop()
    warnings = [line for line in server.output().splitlines() if "fastreg[tracing]" in line]
    assert len(warnings) == 1, server.output()
    assert json.loads(warnings[0])["level"] == "warning"
    assert receiver.posts == 0
