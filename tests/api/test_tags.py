"""end-8a/8b tags list and the catalog: order, `n`, `last`, `Link`."""

from __future__ import annotations

import pytest

from tests.api.conftest import Client
from tests.api.helpers import expect_error, parse_link, push_blob, push_image, put_manifest

# ASCII order: digits < uppercase < '_' < lowercase ('-' and '.' sort before digits)
TAGS = ["latest", "v1", "V2", "1.0", "1.0-rc", "_x", "a", "A", "b.1", "b-1", "z"]
ASCII = sorted(TAGS)


async def tagged(client: Client, name: str = "repo", tags: list[str] = TAGS) -> None:
    _, body = await push_image(client, name, None)
    for tag in tags:
        resp = await put_manifest(client, name, tag, body)
        assert resp.status == 201


async def tags_of(client: Client, query: str = "", name: str = "repo") -> tuple[list[str], object]:
    resp = await client.get(f"/v2/{name}/tags/list{query}")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["name"] == name
    return body["tags"], resp


async def test_all_tags_in_ascii_order(client: Client) -> None:
    await tagged(client)
    tags, resp = await tags_of(client)
    assert tags == ASCII == ["1.0", "1.0-rc", "A", "V2", "_x", "a", "b-1", "b.1", "latest", "v1", "z"]
    assert "Link" not in resp.headers  # type: ignore[attr-defined]
    assert resp.headers["Content-Type"].startswith("application/json")  # type: ignore[attr-defined]


# (query, expected tags, expected Link query or None)
PAGES = [
    ("?n=3", ASCII[:3], f"n=3&last={ASCII[2]}"),
    ("?n=11", ASCII, None),
    ("?n=100", ASCII, None),
    ("?n=10", ASCII[:10], f"n=10&last={ASCII[9]}"),
    ("?last=a", [t for t in ASCII if t > "a"], None),
    ("?n=2&last=a", ["b-1", "b.1"], "n=2&last=b.1"),
    ("?n=2&last=b", ["b-1", "b.1"], "n=2&last=b.1"),  # `last` need not be a tag
    ("?last=z", [], None),
    ("?last=zzz", [], None),
    ("?n=0", [], None),
    ("?n=", ASCII, None),
]


@pytest.mark.parametrize(("query", "expected", "link"), PAGES)
async def test_tags_pagination(
    client: Client, query: str, expected: list[str], link: str | None
) -> None:
    await tagged(client)
    tags, resp = await tags_of(client, query)
    assert tags == expected
    if link is None:
        assert "Link" not in resp.headers  # type: ignore[attr-defined]
    else:
        url = parse_link(resp.headers["Link"])  # type: ignore[attr-defined]
        path, _, got = url.partition("?")
        assert path == "/v2/repo/tags/list"
        assert sorted(got.split("&")) == sorted(link.split("&"))


async def test_following_link_walks_every_tag(client: Client) -> None:
    await tagged(client)
    seen: list[str] = []
    url: str | None = "/v2/repo/tags/list?n=4"
    pages = 0
    while url is not None:
        resp = await client.get(url)
        assert resp.status == 200
        seen += (await resp.json())["tags"]
        url = parse_link(resp.headers["Link"]) if "Link" in resp.headers else None
        pages += 1
    assert seen == ASCII
    assert pages == 3


@pytest.mark.parametrize("n", ["abc", "-1", "1.5", "0x10", " 1"])
async def test_tags_bad_n(client: Client, n: str) -> None:
    await tagged(client, tags=["a"])
    resp = await client.get("/v2/repo/tags/list", params={"n": n})
    await expect_error(resp, 400, "PAGINATION_NUMBER_INVALID")


async def test_tags_of_unknown_repository(client: Client) -> None:
    await expect_error(await client.get("/v2/absent/tags/list"), 404, "NAME_UNKNOWN")


async def test_tags_of_repository_with_blobs_only(client: Client) -> None:
    await push_blob(client, "blobsonly", b"x")
    resp = await client.get("/v2/blobsonly/tags/list")
    assert resp.status == 404
    await expect_error(resp, 404, "NAME_UNKNOWN")


async def test_tags_after_every_tag_is_deleted(client: Client) -> None:
    await tagged(client, tags=["a"])
    assert (await client.delete("/v2/repo/manifests/a")).status == 202
    tags, _ = await tags_of(client)
    assert tags == []


async def test_tags_of_nested_repository(client: Client) -> None:
    await tagged(client, "a/b/c", ["x", "y"])
    await tagged(client, "a/b", ["z"])
    tags, _ = await tags_of(client, name="a/b/c")
    assert tags == ["x", "y"]
    tags, _ = await tags_of(client, name="a/b")
    assert tags == ["z"]


# --- catalog ------------------------------------------------------------------------------------

REPOS = ["library/ubuntu", "a", "a/b/c", "zeta", "b-c", "b.c", "b_c", "m/n"]


async def catalog(client: Client, query: str = "") -> tuple[list[str], object]:
    resp = await client.get(f"/v2/_catalog{query}")
    assert resp.status == 200, await resp.text()
    return (await resp.json())["repositories"], resp


async def test_catalog_empty(client: Client) -> None:
    repos, resp = await catalog(client)
    assert repos == []
    assert "Link" not in resp.headers  # type: ignore[attr-defined]


async def test_catalog_lists_nested_names_in_order(client: Client) -> None:
    for name in REPOS:
        await push_image(client, name, "t")
    await push_blob(client, "blobs/only", b"x")  # no manifests: not a repository
    repos, _ = await catalog(client)
    assert repos == sorted(REPOS)
    assert "a/b" not in repos  # an intermediate directory is not a repository


async def test_catalog_pagination(client: Client) -> None:
    for name in REPOS:
        await push_image(client, name, "t")
    expected = sorted(REPOS)
    repos, resp = await catalog(client, "?n=3")
    assert repos == expected[:3]
    url = parse_link(resp.headers["Link"])  # type: ignore[attr-defined]
    assert url.startswith("/v2/_catalog?")
    seen = list(repos)
    while url:
        resp2 = await client.get(url)
        assert resp2.status == 200
        page = (await resp2.json())["repositories"]
        assert len(page) <= 3
        seen += page
        url = parse_link(resp2.headers["Link"]) if "Link" in resp2.headers else ""
    assert seen == expected
    repos, _ = await catalog(client, f"?last={expected[3]}")
    assert repos == expected[4:]
    repos, _ = await catalog(client, "?n=0")
    assert repos == []


@pytest.mark.parametrize("n", ["abc", "-1"])
async def test_catalog_bad_n(client: Client, n: str) -> None:
    resp = await client.get("/v2/_catalog", params={"n": n})
    await expect_error(resp, 400, "PAGINATION_NUMBER_INVALID")


async def test_repository_with_a_deleted_manifest_stays_listed(client: Client) -> None:
    # Distribution keeps `_manifests/` when the last manifest goes (on every driver): the repository
    # stays in the catalog and its tags list is an empty list, not NAME_UNKNOWN.
    digest, _ = await push_image(client, "repo", "t")
    assert (await client.delete(f"/v2/repo/manifests/{digest}")).status == 202
    repos, _ = await catalog(client)
    assert repos == ["repo"]
    tags, _ = await tags_of(client)
    assert tags == []
