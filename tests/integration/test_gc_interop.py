"""fastreg's and Distribution's garbage collectors on each other's roots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import REPO_ROOT, registry_config
from tests.integration.test_gc_online import OCI_INDEX, OCI_MANIFEST, Pusher, request, sha256


def fill(url: str) -> dict[str, str]:
    """A tagged index over two untagged children, a signature of a tagged image, a deleted
    image. Returns name -> digest."""
    p = Pusher(url)
    out: dict[str, str] = {}
    for arch in ("amd64", "arm64"):
        d = p.push("lib/multi", arch, [f"{arch}-layer".encode()], f'{{"a":"{arch}"}}'.encode())
        assert d
        out[arch] = d
    children = []
    for arch in ("amd64", "arm64"):
        raw = request("GET", f"{url}/v2/lib/multi/manifests/{out[arch]}")[1]
        children.append({"mediaType": OCI_MANIFEST, "digest": out[arch], "size": len(raw)})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
    assert request("PUT", f"{url}/v2/lib/multi/manifests/latest", index, OCI_INDEX)[0] == 201
    out["index"] = sha256(index)
    image = p.push("lib/app", "v1", [b"app-layer"], b'{"app":1}')
    assert image
    out["image"] = image
    raw = request("GET", f"{url}/v2/lib/app/manifests/{image}")[1]
    p.blob("lib/app", b"{}")
    p.blob("lib/app", b"sig-payload")
    sig = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sig",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": sha256(b"{}"),
                "size": 2,
            },
            "layers": [
                {
                    "mediaType": "application/octet-stream",
                    "digest": sha256(b"sig-payload"),
                    "size": 11,
                }
            ],
            "subject": {"mediaType": OCI_MANIFEST, "digest": image, "size": len(raw)},
        }
    ).encode()
    assert request("PUT", f"{url}/v2/lib/app/manifests/{sha256(sig)}", sig, OCI_MANIFEST)[0] == 201
    out["sig"] = sha256(sig)
    doomed = p.push("lib/app", "old", [b"doomed-layer"], b'{"old":1}')
    assert doomed and request("DELETE", f"{url}/v2/lib/app/manifests/{doomed}")[0] == 202
    out["doomed"] = doomed
    return out


def untag(root: Path, name: str, tag: str) -> None:
    import shutil

    shutil.rmtree(root / "docker/registry/v2/repositories" / name / "_manifests/tags" / tag)


def run_gc(argv: list[str], root: Path, tmp: Path) -> str:
    cfg = tmp / "gc.yml"
    cfg.write_text(registry_config(root, 5000))
    proc = subprocess.run(
        [*argv, str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_distribution_gc_on_a_fastreg_root(fastreg_server, tmp_path: Path) -> None:
    root = tmp_path / "root"
    s = fastreg_server(root)
    d = fill(s.url)
    s.stop()
    untag(root, "lib/multi", "amd64")
    untag(root, "lib/multi", "arm64")
    (root / "docker/registry/v2/_gc/tombstones/sha256").mkdir(parents=True)  # ours: ignored

    out = run_gc(["docker-registry", "garbage-collect"], root, tmp_path)
    assert f"blob eligible for deletion: {d['doomed']}" in out
    s = fastreg_server(root)
    p = Pusher(s.url)
    for ref in ("latest", d["amd64"], d["arm64"], "v1", d["sig"]):
        name = "lib/app" if ref in ("v1", d["sig"]) else "lib/multi"
        if ref == "latest":
            assert request("GET", f"{s.url}/v2/{name}/manifests/latest")[0] == 200
        else:
            assert p.pulls(name, ref), ref
    refs = json.loads(request("GET", f"{s.url}/v2/lib/app/referrers/{d['image']}")[1])
    assert [m["digest"] for m in refs["manifests"]] == [d["sig"]]
    s.stop()

    # -m: Distribution 2.8 deletes the untagged children of the tagged index (its issue 3178)
    # and the signature: what it is documented to do. fastreg keeps serving what is left.
    out = run_gc(["docker-registry", "garbage-collect", "-m"], root, tmp_path)
    s = fastreg_server(root)
    p = Pusher(s.url)
    assert p.pulls("lib/app", "v1")
    assert request("GET", f"{s.url}/v2/lib/multi/manifests/latest")[0] == 200
    gone = request("GET", f"{s.url}/v2/lib/multi/manifests/{d['amd64']}")[0]
    print(f"\nDistribution -m on a fastreg root: index child -> {gone}; output:\n{out[-600:]}")


def test_fastreg_gc_keeps_what_distribution_m_loses(fastreg_server, tmp_path: Path) -> None:
    root = tmp_path / "root"
    s = fastreg_server(root)
    d = fill(s.url)
    s.stop()
    untag(root, "lib/multi", "amd64")
    untag(root, "lib/multi", "arm64")
    out = run_gc([sys.executable, "-m", "fastreg", "garbage-collect", "-m"], root, tmp_path)
    assert "blobs marked" in out and "manifests eligible for deletion" in out
    s = fastreg_server(root)
    p = Pusher(s.url)
    for name, ref in (
        ("lib/multi", d["amd64"]),
        ("lib/multi", d["arm64"]),
        ("lib/app", "v1"),
        ("lib/app", d["sig"]),
    ):
        assert p.pulls(name, ref), ref
    assert request("GET", f"{s.url}/v2/lib/app/manifests/{d['doomed']}")[0] == 404


def test_fastreg_gc_on_a_distribution_root(
    distribution_server, distribution_gc, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    s = distribution_server(root)
    p = Pusher(s.url)
    kept = p.push("lib/app", "v1", [b"kept-layer"], b'{"k":1}')
    doomed = p.push("lib/app", "old", [b"gone-layer"], b'{"g":1}')
    assert kept and doomed
    assert request("DELETE", f"{s.url}/v2/lib/app/manifests/{doomed}")[0] == 202
    s.stop()
    expected = distribution_gc(root, dry_run=True)
    out = run_gc([sys.executable, "-m", "fastreg", "garbage-collect"], root, tmp_path)
    ours = {line.split(": ", 1)[1] for line in out.splitlines() if "blob eligible" in line}
    assert ours == expected.eligible_digests and doomed in ours
    s = distribution_server(root)
    assert Pusher(s.url).pulls("lib/app", "v1")
    assert request("GET", f"{s.url}/v2/lib/app/blobs/{sha256(b'gone-layer')}")[0] == 404
