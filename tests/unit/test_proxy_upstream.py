"""The upstream's `WWW-Authenticate` challenge, as Docker Hub and Distribution send it."""

from __future__ import annotations

from fastreg.registry.proxy.upstream import Challenge, basic, parse_challenge


def test_docker_hub_bearer_challenge() -> None:
    header = ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
              'scope="repository:library/alpine:pull"')  # fmt: skip
    assert parse_challenge(header) == Challenge("bearer", {
        "realm": "https://auth.docker.io/token", "service": "registry.docker.io",
        "scope": "repository:library/alpine:pull"})  # fmt: skip


def test_basic_and_unquoted_and_unknown_schemes() -> None:
    assert parse_challenge('Basic realm="Registry Realm"') == Challenge(
        "basic", {"realm": "Registry Realm"}
    )
    assert parse_challenge("bearer realm=http://h/token") == Challenge(
        "bearer", {"realm": "http://h/token"}
    )
    assert parse_challenge("Negotiate abc") is None
    assert parse_challenge("") is None


def test_basic_credentials() -> None:
    assert basic("alice", "secret") == "Basic YWxpY2U6c2VjcmV0"
