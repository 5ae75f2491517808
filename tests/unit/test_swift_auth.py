"""Swift parameters and the authentication requests/answers of every auth version (no Keystone
runs here: the v2/v3 shapes are checked against what ncw/swift, Distribution's client, sends)."""

from __future__ import annotations

from typing import Any

import pytest

from fastreg.config import ConfigError
from fastreg.storage.swift.auth import AuthError, auth_request, read_answer
from fastreg.storage.swift.params import SwiftParams

BASE = {"username": "alice", "password": "pw", "container": "reg"}


def params(**extra: Any) -> SwiftParams:
    return SwiftParams.parse({**BASE, "authurl": "https://ks.example/v3", **extra})


@pytest.mark.parametrize(
    ("url", "version"),
    [("http://h/auth/v1.0", 1), ("https://ks/v2.0", 2), ("https://ks/v3", 3), ("https://ks/v3/", 3)],
)
def test_auth_version_from_the_url(url: str, version: int) -> None:
    assert SwiftParams.parse({**BASE, "authurl": url}).authversion == version


def test_parameters_checked_and_named() -> None:
    with pytest.raises(ConfigError, match="storage.swift.container: required"):
        SwiftParams.parse({"username": "u", "password": "p", "authurl": "http://h/v1.0"})
    with pytest.raises(ConfigError, match="storage.swift.authversion: cannot tell"):
        SwiftParams.parse({**BASE, "authurl": "http://h/auth"})
    with pytest.raises(ConfigError, match="storage.swift.chunksize"):
        params(chunksize=1000)
    with pytest.raises(ConfigError, match="storage.swift.endpointtype"):
        params(endpointtype="private")
    p = params(chunksize="2097152", rootdirectory="/reg/", tempurlmethods="GET, PUT", retries=0)
    assert (p.chunksize, p.prefix, p.tempurlmethods, p.retries) == (2 * 1024**2, "reg", ("GET", "PUT"), 3)
    assert params(prefix="/a/").prefix == "a"
    with pytest.raises(ConfigError, match="rootdirectory: differs"):
        params(prefix="a", rootdirectory="b")


def test_v1_request_and_answer() -> None:
    p = SwiftParams.parse({**BASE, "authurl": "http://h/auth/v1.0", "username": "test:tester"})
    req = auth_request(p)
    assert (req.method, req.url, req.body) == ("GET", "http://h/auth/v1.0", None)
    assert req.headers == {"X-Auth-User": "test:tester", "X-Auth-Key": "pw"}
    creds = read_answer(p, 200, {"X-Storage-Url": "http://h/v1/AUTH_t/", "X-Auth-Token": "tk"}, None)
    assert (creds.storage_url, creds.token) == ("http://h/v1/AUTH_t", "tk")
    with pytest.raises(AuthError, match=r"refused \(401\)"):
        read_answer(p, 401, {}, None)


def test_v3_password_scoped_to_a_project_by_name() -> None:
    req = auth_request(params(domain="users", tenant="proj", tenantdomain="projects"))
    assert (req.method, req.url) == ("POST", "https://ks.example/v3/auth/tokens")
    assert req.headers["Content-Type"] == "application/json"
    assert req.body == {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "alice", "password": "pw", "domain": {"name": "users"}}}},
        "scope": {"project": {"name": "proj", "domain": {"name": "projects"}}},
    }}  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "scope"),
    [
        ({"tenant": "p"}, {"project": {"name": "p", "domain": {"name": "Default"}}}),
        ({"tenant": "p", "domainid": "d1"}, {"project": {"name": "p", "domain": {"id": "d1"}}}),
        ({"tenant": "p", "tenantdomainid": "t1"}, {"project": {"name": "p", "domain": {"id": "t1"}}}),
        ({"tenantid": "42", "tenant": "p"}, {"project": {"id": "42"}}),
        ({"trustid": "tr", "tenant": "p"}, {"OS-TRUST:trust": {"id": "tr"}}),
        ({}, None),
    ],
)
def test_v3_scopes(extra: dict[str, str], scope: dict[str, Any] | None) -> None:
    body: Any = auth_request(params(**extra)).body
    assert body["auth"].get("scope") == scope


def _catalog() -> dict[str, Any]:
    endpoints = [
        {"interface": "public", "region_id": "east", "url": "https://east/v1/AUTH_p"},
        {"interface": "internal", "region_id": "west", "url": "http://west-int/v1/AUTH_p"},
        {"interface": "public", "region_id": "west", "url": "https://west/v1/AUTH_p/"},
    ]
    return {"token": {"catalog": [{"type": "identity", "endpoints": []},
                                  {"type": "object-store", "endpoints": endpoints}]}}  # fmt: skip


def test_v3_answer_picks_the_interface_and_region() -> None:
    headers = {"X-Subject-Token": "tok"}
    assert read_answer(params(), 201, headers, _catalog()).storage_url == "https://east/v1/AUTH_p"
    west = read_answer(params(region="west"), 201, headers, _catalog())
    assert (west.storage_url, west.token) == ("https://west/v1/AUTH_p", "tok")
    internal = read_answer(params(region="west", endpointtype="internal"), 201, headers, _catalog())
    assert internal.storage_url == "http://west-int/v1/AUTH_p"
    with pytest.raises(AuthError, match="no public object-store endpoint in region 'north'"):
        read_answer(params(region="north"), 201, headers, _catalog())
    with pytest.raises(AuthError, match="no X-Subject-Token"):
        read_answer(params(), 201, {}, _catalog())


def test_v2_request_and_answer() -> None:
    p = SwiftParams.parse({**BASE, "authurl": "https://ks/v2.0", "tenant": "proj"})
    req = auth_request(p)
    assert (req.method, req.url) == ("POST", "https://ks/v2.0/tokens")
    assert req.body == {"auth": {"passwordCredentials": {"username": "alice", "password": "pw"},
                                 "tenantName": "proj"}}  # fmt: skip
    answer = {"access": {"token": {"id": "t2"}, "serviceCatalog": [{"type": "object-store",
              "endpoints": [{"region": "r", "publicURL": "https://s/v1/AUTH_x"}]}]}}  # fmt: skip
    creds = read_answer(p, 200, {}, answer)
    assert (creds.storage_url, creds.token) == ("https://s/v1/AUTH_x", "t2")
