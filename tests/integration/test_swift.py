"""Real servers on a one-node OpenStack Swift: skopeo round trips through fastreg's swift driver
(blob pulls follow the redirect to a Swift temp URL), and one container served by fastreg and
Debian's `docker-registry` (Distribution 2.8, built with its swift driver) in turn, both ways.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.swiftserver import SwiftServer

from . import test_skopeo as core
from .conftest import ServerProcess
from .test_interop import push_set, verify_set, verify_tags

pytestmark = [pytest.mark.integration, pytest.mark.swift]

#: The core round trips that touch every storage path (layers, an index, schema 2, deletes);
#: the rest differ from these only above the storage layer.
ROUND_TRIPS = [
    core.test_copy_three_layer_oci_image_round_trip,
    core.test_copy_multi_arch_index_all,
    core.test_copy_docker_schema2,
    core.test_delete_tag,
]


@pytest.fixture
def swift_config(swift_server: SwiftServer, swift_container: str) -> dict[str, Any]:
    """`extra_config` putting a server on the test's container (Distribution's swift keys)."""
    return {"storage": {"swift": swift_server.swift_parameters(swift_container)}}


@pytest.mark.parametrize("case", ROUND_TRIPS, ids=lambda f: f.__name__.removeprefix("test_"))
def test_skopeo_round_trip_on_swift(
    case: Callable[..., None], fastreg_server: Any, swift_config: dict[str, Any], skopeo: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    registry = fastreg_server(tmp_path / "unused-root", swift_config)
    case(registry, skopeo, tmp_path)


@pytest.mark.parametrize(
    ("first", "second"), [("fastreg", "distribution"), ("distribution", "fastreg")]
)
def test_same_container_served_by_both(
    first: str, second: str, server_factory: Callable[[str], Any], swift_config: dict[str, Any],
    swift_server: SwiftServer, swift_container: str, skopeo: Any, tmp_path: Path,
) -> None:  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    a: ServerProcess = server_factory(first)(tmp_path / "a", swift_config)
    try:
        pushed = push_set(skopeo, a, work, "v1")
    finally:
        a.stop()
    names = swift_server.names(swift_container)
    assert any(n.startswith("files/docker/registry/v2/repositories/") for n in names), names[:20]
    assert any(n.startswith("files/docker/registry/v2/blobs/sha256/") for n in names), names[:20]
    assert any(n.startswith("segments/") for n in names), f"{first} wrote no DLO segments"
    assert not [n for n in names if "/_uploads/" in n], f"{first} left upload state behind"

    b: ServerProcess = server_factory(second)(tmp_path / "b", swift_config)
    try:
        verify_set(skopeo, b, pushed, work)
        verify_tags(skopeo, b, pushed)
        more = push_set(skopeo, b, work, "v2")  # mixed writes on the same container
        verify_tags(skopeo, b, pushed + more)
    finally:
        b.stop()
