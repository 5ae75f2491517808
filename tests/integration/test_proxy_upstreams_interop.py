"""One fastreg mirror for two real upstreams (`proxy.upstreams`): a second fastreg (htpasswd)
and Distribution 2.8 (`docker-registry`, htpasswd), pulled through with skopeo as podman users
name them (`docker://mirror/<namespace>/...`); a local repository beside them; and a short ttl
that removes cached content, fetched again on the next pull (the upstream's access log counts).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.auth.tokens import write_htpasswd

from .conftest import ServerFactory, ServerProcess, Skopeo, SkopeoError
from .images import make_oci_image
from .test_proxy_interop import CREDS, files, get, push

pytestmark = pytest.mark.integration

FASTREG_NS = "fastreg.test"  # as clients know the upstreams (their addresses are 127.0.0.1)
DISTRIBUTION_NS = "distribution.test"


@pytest.fixture
def htpasswd(tmp_path: Path) -> str:
    return str(write_htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw"}))


@pytest.fixture
def fastreg_upstream(fastreg_server: ServerFactory, htpasswd: str, tmp_path: Path) -> ServerProcess:
    return fastreg_server(tmp_path / "fastreg-upstream", {
        "log": {"level": "info"},  # its access log counts what the mirror fetched
        "auth": {"htpasswd": {"realm": "upstream", "path": htpasswd}}})  # fmt: skip


@pytest.fixture
def distribution_upstream(
    distribution_server: ServerFactory, htpasswd: str, tmp_path: Path
) -> ServerProcess:
    return distribution_server(
        tmp_path / "distribution-upstream",
        {"auth": {"htpasswd": {"realm": "upstream", "path": htpasswd}}},
    )


def start_mirror(
    fastreg_server: ServerFactory, root: Path, *upstreams: tuple[str, ServerProcess], ttl: str
) -> ServerProcess:
    entries = [{"namespace": ns, "remoteurl": up.url, "username": "alice", "password": "alice-pw",
                "ttl": ttl} for ns, up in upstreams]  # fmt: skip
    return fastreg_server(root, {
        "proxy": {"upstreams": entries},
        "storage": {"maintenance": {"gc": {"delay": "0s"}}},  # the collection after expiry
    })  # fmt: skip


def gets(server: ServerProcess, path: str) -> int:
    """GETs of ``path`` answered 200 in a fastreg's access log (Distribution's "response
    completed" lines, logfmt or JSON)."""
    fields = [r"http\.request\.method\W+GET\b", rf"http\.request\.uri\W+{re.escape(path)}\b",
              r"http\.response\.status\W+200\b"]
    return sum(all(re.search(f, line) for f in fields) for line in server.output().splitlines())


def test_two_upstreams_and_a_local_repository_in_one_mirror(
    skopeo: Skopeo,
    fastreg_server: ServerFactory,
    fastreg_upstream: ServerProcess,
    distribution_upstream: ServerProcess,
    tmp_path: Path,
) -> None:
    mirror = start_mirror(fastreg_server, tmp_path / "mirror", (FASTREG_NS, fastreg_upstream),
                          (DISTRIBUTION_NS, distribution_upstream), ttl="168h")  # fmt: skip
    push(skopeo, fastreg_upstream, tmp_path, "team/app:v1", [1500, 300_000])
    push(skopeo, distribution_upstream, tmp_path, "team/app:v1", [1700, 200_000])
    for ns, upstream in ((FASTREG_NS, fastreg_upstream), (DISTRIBUTION_NS, distribution_upstream)):
        direct, through = tmp_path / f"direct-{ns}", tmp_path / f"through-{ns}"
        skopeo("copy", "--src-creds", CREDS, f"docker://{upstream.host}/team/app:v1",
               f"dir:{direct}")  # fmt: skip
        skopeo("copy", f"docker://{mirror.host}/{ns}/team/app:v1", f"dir:{through}")
        assert files(through) == files(direct)
        assert skopeo.list_tags(f"docker://{mirror.host}/{ns}/team/app") == ["v1"]
    assert files(tmp_path / f"through-{FASTREG_NS}") != files(tmp_path / f"through-{DISTRIBUTION_NS}")
    # a local repository beside the mirrored namespaces: pushed and pulled back
    make_oci_image(tmp_path / "local", "latest", layers=[1000, 5000])
    skopeo("copy", f"oci:{tmp_path / 'local'}:latest", f"docker://{mirror.host}/ours/tool:1")
    skopeo("copy", f"docker://{mirror.host}/ours/tool:1", f"dir:{tmp_path / 'ours'}")
    # a mirrored name is read-only
    with pytest.raises(SkopeoError):
        skopeo("copy", f"oci:{tmp_path / 'local'}:latest",
               f"docker://{mirror.host}/{FASTREG_NS}/team/app:v2")  # fmt: skip
    status, _, body = get(f"{mirror.url}/v2/{DISTRIBUTION_NS}/team/app/blobs/uploads/", "POST")
    assert status == 405 and json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"
    status, _, body = get(f"{mirror.url}/v2/_catalog")
    assert json.loads(body)["repositories"] == [
        f"{DISTRIBUTION_NS}/team/app", f"{FASTREG_NS}/team/app", "ours/tool"]  # fmt: skip


def test_ttl_expiry_removes_cached_content_and_the_next_pull_fetches_again(
    skopeo: Skopeo, fastreg_server: ServerFactory, fastreg_upstream: ServerProcess, tmp_path: Path
) -> None:
    mirror = start_mirror(fastreg_server, tmp_path / "mirror", (FASTREG_NS, fastreg_upstream),
                          ttl="2s")  # fmt: skip
    digest = push(skopeo, fastreg_upstream, tmp_path, "team/app:v1", [1500, 300_000])
    skopeo("copy", f"docker://{mirror.host}/{FASTREG_NS}/team/app:v1", f"dir:{tmp_path / 'one'}")
    manifest = json.loads((tmp_path / "one" / "manifest.json").read_text())
    layer = manifest["layers"][1]["digest"]
    layer_path = f"/v2/team/app/blobs/{layer}"
    assert gets(fastreg_upstream, layer_path) == 1
    v2 = tmp_path / "mirror" / "docker" / "registry" / "v2"
    revision = v2 / f"repositories/{FASTREG_NS}/team/app/_manifests/revisions/sha256/{digest[7:]}"
    data = v2 / f"blobs/sha256/{layer[7:9]}/{layer[7:]}/data"
    assert revision.exists() and data.exists()
    deadline = time.monotonic() + 30
    while (revision.exists() or data.exists()) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not revision.exists() and not data.exists(), mirror.output()[-3000:]
    skopeo("copy", f"docker://{mirror.host}/{FASTREG_NS}/team/app:v1", f"dir:{tmp_path / 'two'}")
    assert files(tmp_path / "two") == files(tmp_path / "one")
    assert gets(fastreg_upstream, layer_path) == 2  # fetched again from the upstream
