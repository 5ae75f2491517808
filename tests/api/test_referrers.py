"""end-12a/12b: `GET /v2/<name>/referrers/<digest>[?artifactType=]`."""

from __future__ import annotations

import orjson
import pytest

from tests.api.conftest import Client
from tests.api.helpers import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    UNKNOWN_DIGEST,
    descriptor,
    expect_error,
    image_index,
    push_artifact,
    push_blob,
    push_image,
    put_manifest,
    sha256,
    sha512,
)

SIG = "application/vnd.example.signature.v1"
SBOM = "application/vnd.example.sbom.v1"


async def referrers(client: Client, name: str, digest: str, **params: str) -> tuple[dict, object]:
    resp = await client.get(f"/v2/{name}/referrers/{digest}", params=params or None)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == OCI_INDEX
    body = orjson.loads(await resp.read())
    assert body["schemaVersion"] == 2
    assert body["mediaType"] == OCI_INDEX
    return body, resp


async def test_referrers_list_artifacts(client: Client) -> None:
    subject, subject_body = await push_image(client, "repo", "v1")
    sig, sig_body, resp = await push_artifact(
        client, "repo", (OCI_MANIFEST, subject_body), SIG, {"org.example.k": "sig"}, b"sig")
    assert resp.status == 201
    sbom, sbom_body, resp = await push_artifact(
        client, "repo", (OCI_MANIFEST, subject_body), SBOM, {"org.example.k": "sbom"}, b"sbom")
    assert resp.status == 201
    # an image manifest without artifactType: artifactType is its config media type
    cfg, cfg_body, resp = await push_artifact(
        client, "repo", (OCI_MANIFEST, subject_body), None, None, b"cfg",
        config=("application/vnd.example.config.v1+json", b'{"k":1}'))
    assert resp.status == 201
    # an index can be a referrer too
    _, child = await push_image(client, "repo", None, [b"child"])
    idx_body = image_index([(OCI_MANIFEST, child)], artifactType="application/vnd.example.idx",
                           subject=descriptor(OCI_MANIFEST, subject_body),
                           annotations={"org.example.k": "idx"})
    assert (await put_manifest(client, "repo", sha256(idx_body), idx_body, OCI_INDEX)).status == 201
    # unrelated manifests do not show
    await push_image(client, "repo", "other", [b"unrelated"])

    body, resp = await referrers(client, "repo", subject)
    assert "OCI-Filters-Applied" not in resp.headers  # type: ignore[attr-defined]
    got = {m["digest"]: m for m in body["manifests"]}
    assert got == {
        sig: {"mediaType": OCI_MANIFEST, "digest": sig, "size": len(sig_body),
              "artifactType": SIG, "annotations": {"org.example.k": "sig"}},
        sbom: {"mediaType": OCI_MANIFEST, "digest": sbom, "size": len(sbom_body),
               "artifactType": SBOM, "annotations": {"org.example.k": "sbom"}},
        cfg: {"mediaType": OCI_MANIFEST, "digest": cfg, "size": len(cfg_body),
              "artifactType": "application/vnd.example.config.v1+json"},
        sha256(idx_body): {"mediaType": OCI_INDEX, "digest": sha256(idx_body),
                           "size": len(idx_body), "artifactType": "application/vnd.example.idx",
                           "annotations": {"org.example.k": "idx"}},
    }


async def test_referrers_artifact_type_filter(client: Client) -> None:
    subject, subject_body = await push_image(client, "repo", "v1")
    sig1, _, _ = await push_artifact(client, "repo", (OCI_MANIFEST, subject_body), SIG, blob=b"1")
    sig2, _, _ = await push_artifact(client, "repo", (OCI_MANIFEST, subject_body), SIG, blob=b"2")
    await push_artifact(client, "repo", (OCI_MANIFEST, subject_body), SBOM, blob=b"3")
    body, resp = await referrers(client, "repo", subject, artifactType=SIG)
    assert resp.headers["OCI-Filters-Applied"] == "artifactType"  # type: ignore[attr-defined]
    assert sorted(m["digest"] for m in body["manifests"]) == sorted([sig1, sig2])
    assert all(m["artifactType"] == SIG for m in body["manifests"])
    body, resp = await referrers(client, "repo", subject, artifactType="application/none")
    assert resp.headers["OCI-Filters-Applied"] == "artifactType"  # type: ignore[attr-defined]
    assert body["manifests"] == []


async def test_referrers_of_unknown_subject(client: Client) -> None:
    await push_image(client, "repo", "v1")
    body, _ = await referrers(client, "repo", UNKNOWN_DIGEST)
    assert body["manifests"] == []


async def test_referrers_in_unknown_repository(client: Client) -> None:
    body, _ = await referrers(client, "absent", UNKNOWN_DIGEST)
    assert body["manifests"] == []


async def test_referrers_of_missing_subject(client: Client) -> None:
    missing = orjson.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                            "config": descriptor(OCI_CONFIG, b"x"), "layers": []})
    digest, _, resp = await push_artifact(client, "repo", (OCI_MANIFEST, missing), SIG)
    assert resp.status == 201
    body, _ = await referrers(client, "repo", sha256(missing))
    assert [m["digest"] for m in body["manifests"]] == [digest]


async def test_referrers_are_per_repository(client: Client) -> None:
    subject, subject_body = await push_image(client, "one", "v1")
    await push_artifact(client, "one", (OCI_MANIFEST, subject_body), SIG)
    body, _ = await referrers(client, "two", subject)
    assert body["manifests"] == []


async def test_referrers_sha512_subject(client: Client) -> None:
    missing = b'{"schemaVersion":2}'
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SIG,
           "config": descriptor("application/vnd.oci.empty.v1+json", b"{}"), "layers": [],
           "subject": {"mediaType": OCI_MANIFEST, "digest": sha512(missing), "size": len(missing)}}
    await push_blob(client, "repo", b"{}")
    body = orjson.dumps(doc)
    resp = await put_manifest(client, "repo", sha256(body), body)
    assert resp.status == 201, await resp.text()
    assert resp.headers["OCI-Subject"] == sha512(missing)
    got, _ = await referrers(client, "repo", sha512(missing))
    assert [m["digest"] for m in got["manifests"]] == [sha256(body)]


@pytest.mark.parametrize("digest", ["sha256:abc", "sha256:" + "G" * 64, "notadigest", "md5:" + "0" * 32])
async def test_referrers_malformed_digest(client: Client, digest: str) -> None:
    resp = await client.get(f"/v2/repo/referrers/{digest}")
    await expect_error(resp, 400, "DIGEST_INVALID")


@pytest.mark.parametrize("by", ["digest", "tag"])
async def test_deleted_referrer_leaves_the_list(client: Client, by: str) -> None:
    subject, subject_body = await push_image(client, "repo", "v1")
    gone, _, _ = await push_artifact(client, "repo", (OCI_MANIFEST, subject_body), SIG, blob=b"a")
    kept, _, _ = await push_artifact(client, "repo", (OCI_MANIFEST, subject_body), SIG, blob=b"b")
    if by == "tag":
        # untagging does not delete the manifest: it stays a referrer
        raw = await (await client.get(f"/v2/repo/manifests/{gone}",
                                      headers={"Accept": OCI_MANIFEST})).read()
        assert (await put_manifest(client, "repo", "sig", raw)).status == 201
        assert (await client.delete("/v2/repo/manifests/sig")).status == 202
        body, _ = await referrers(client, "repo", subject)
        assert sorted(m["digest"] for m in body["manifests"]) == sorted([gone, kept])
        return
    assert (await client.delete(f"/v2/repo/manifests/{gone}")).status == 202
    body, _ = await referrers(client, "repo", subject)
    assert [m["digest"] for m in body["manifests"]] == [kept]


async def test_deleting_the_subject_keeps_referrers_listed(client: Client) -> None:
    subject, subject_body = await push_image(client, "repo", "v1")
    sig, _, _ = await push_artifact(client, "repo", (OCI_MANIFEST, subject_body), SIG)
    assert (await client.delete(f"/v2/repo/manifests/{subject}")).status == 202
    body, _ = await referrers(client, "repo", subject)
    assert [m["digest"] for m in body["manifests"]] == [sig]
