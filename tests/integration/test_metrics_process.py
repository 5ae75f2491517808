"""`/metrics` of `fastreg serve --workers 3`, read with prometheus_client's parser: one scrape sums
every worker, counters never go back, also while a worker is SIGKILLed and replaced, and the
metrics carry Distribution's names, types and labels."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.conftest import free_port
from tests.integration.test_process import start_fastreg
from tests.metrics import parse, samples

pytestmark = pytest.mark.integration

BASE_OK = (("code", "200"), ("handler", "base"), ("method", "get"))


def scrape(port: int) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return parse(resp.read().decode())


def worker_pids(families: dict) -> set[str]:
    return {labels[0][1] for labels in samples(families, "process_start_time_seconds")}


class Traffic(threading.Thread):
    """GET /v2/ on new connections (each may reach another worker) until stopped."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.attempts = self.answered = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.attempts += 1
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/v2/", headers={"Connection": "close"})
                resp = conn.getresponse()
                resp.read()
                conn.close()
                self.answered += resp.status == 200
            except OSError:  # the worker that had the connection was killed
                pass


def test_workers_sum_and_never_go_back(tmp_path: Path) -> None:
    debug_port = free_port()
    extra = {"http": {"debug": {"addr": f"127.0.0.1:{debug_port}",
                                "prometheus": {"enabled": True}}}}
    server = start_fastreg(tmp_path / "root", tmp_path / "w", "--workers", "3", extra=extra)
    traffic = Traffic(server.port)
    try:
        deadline = time.monotonic() + 30
        while len(pids := worker_pids(scrape(debug_port))) < 3:
            assert time.monotonic() < deadline, pids
            time.sleep(0.1)
        # the GET /v2/ the start made to see the server ready are counted too
        before = samples(scrape(debug_port), "registry_http_requests_total").get(BASE_OK, 0.0)
        traffic.start()
        seen = 0.0
        killed: str | None = None
        replaced = False
        deadline = time.monotonic() + 60
        while not replaced or traffic.answered < 400:
            assert time.monotonic() < deadline, (killed, traffic.answered)
            families = scrape(debug_port)
            count = samples(families, "registry_http_requests_total").get(BASE_OK, 0.0) - before
            assert count >= seen, "a counter went back"
            assert count <= traffic.attempts
            seen = count
            pids = worker_pids(families)
            if killed is None and count >= 150:
                killed = min(pids)
                os.kill(int(killed), signal.SIGKILL)
            elif killed is not None and killed not in pids and len(pids) == 3:
                replaced = True  # the supervisor started another; the dead one's counts stay
            time.sleep(0.05)
        traffic.stop.set()
        traffic.join(timeout=20)
        families = scrape(debug_port)
        count = samples(families, "registry_http_requests_total")[BASE_OK] - before
        assert traffic.answered <= count <= traffic.attempts  # every answer, over all workers
        assert traffic.answered >= 400
        assert count >= seen
        time.sleep(1.5)  # the histograms are written at each worker's sync
        families = scrape(debug_port)
        observed = samples(families, "registry_http_request_duration_seconds_count")
        assert 0 < observed[(("handler", "base"), ("method", "get"))] <= count
        assert_distribution_shapes(families)
        assert len(worker_pids(families)) == 3
    finally:
        traffic.stop.set()
        server.stop()


def assert_distribution_shapes(families: dict) -> None:
    shapes = {
        "registry_http_requests": ("counter", {"code", "handler", "method"}),
        "registry_http_request_duration_seconds": ("histogram", {"handler", "method"}),
        "registry_http_request_size_bytes": ("histogram", {"handler"}),
        "registry_http_response_size_bytes": ("histogram", {"handler"}),
        "registry_http_in_flight_requests": ("gauge", {"handler"}),
        "process_resident_memory_bytes": ("gauge", {"pid"}),
        "process_cpu_seconds": ("counter", {"pid"}),
    }
    for name, (kind, labels) in shapes.items():
        family = families[name]
        assert family.type == kind, name
        for s in family.samples:
            assert set(s.labels) - {"le"} == labels, (name, s)
    handlers = {s.labels["handler"] for s in families["registry_http_in_flight_requests"].samples}
    assert {"base", "blob", "blob_upload", "blob_upload_chunk", "manifest", "tags",
            "catalog"} <= handlers
