"""`proxy:` (Distribution's keys) and fastreg's `proxy.upstreams`, parsed into typed settings."""

from __future__ import annotations

import re

import pytest

from fastreg.config import ConfigError, parse_config
from fastreg.registry.proxy.settings import DEFAULT_TTL, ProxySettings, Upstream

BASE = "version: 0.1\nstorage:\n  inmemory: {}\n"


def proxy(text: str, **env: str) -> ProxySettings:
    config = parse_config(BASE + "proxy:\n" + text, environ=env)
    assert config.warnings == ()
    return config.proxy


def test_no_section_is_no_mirror() -> None:
    assert not parse_config(BASE, environ={}).proxy.enabled


def test_distribution_keys() -> None:
    settings = proxy("  remoteurl: https://registry-1.docker.io/\n  username: alice\n"
                     "  password: secret\n  ttl: 30m\n")
    assert settings.default == Upstream("https://registry-1.docker.io", "alice", "secret", 1800.0)
    assert settings.enabled and settings.default.credentials == ("alice", "secret")


def test_ttl_defaults_to_seven_days_and_anonymous() -> None:
    settings = proxy("  remoteurl: http://127.0.0.1:5000\n")
    assert settings.default == Upstream("http://127.0.0.1:5000", ttl=DEFAULT_TTL)
    assert DEFAULT_TTL == 168 * 3600 and settings.default.credentials is None


def test_environment_sets_the_remote() -> None:
    config = parse_config(BASE, environ={"REGISTRY_PROXY_REMOTEURL": "https://ghcr.io"})
    assert config.proxy.default is not None and config.proxy.default.remoteurl == "https://ghcr.io"


def test_upstreams_list() -> None:
    config = parse_config(
        BASE + "proxy:\n  upstreams:\n"
        "    - {namespace: docker.io, remoteurl: 'https://registry-1.docker.io', ttl: 1h}\n"
        "    - {namespace: GHCR.io, remoteurl: 'https://ghcr.io', username: u, password: p}\n",
        environ={},
    )
    assert config.warnings == ()
    settings = config.proxy
    assert settings.default is None and settings.enabled
    assert settings.upstreams == (
        Upstream("https://registry-1.docker.io", ttl=3600.0, namespace="docker.io"),
        Upstream("https://ghcr.io", "u", "p", DEFAULT_TTL, "ghcr.io"),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("  remoteurl: ftp://x\n", "proxy.remoteurl: expected http(s)://host[:port]"),
        ("  remoteurl: https://x/v2/\n", "proxy.remoteurl: expected http(s)://host[:port]"),
        ("  username: alice\n", "proxy.remoteurl: required"),
        ("  remoteurl: https://x\n  ttl: soon\n", "proxy.ttl"),
        ("  remoteurl: https://x\n  ttl: -1h\n", "proxy.ttl: negative"),
        ("  remoteurl: https://x\n  password: p\n", "proxy.username: required"),
        ("  upstreams: [{remoteurl: 'https://x'}]\n", "proxy.upstreams[0].namespace: required"),
        ("  upstreams: [{namespace: docker.io}]\n", "proxy.upstreams[0].remoteurl: required"),
        ("  upstreams: [{namespace: 'a/b', remoteurl: 'https://x'}]\n", "expected a host name"),
        (("  upstreams:\n    - {namespace: q.io, remoteurl: 'https://x'}\n"
         "    - {namespace: Q.io, remoteurl: 'https://y'}\n"),
         "proxy.upstreams[1].namespace: duplicate"),
        ("  upstreams: {namespace: q.io}\n", "proxy.upstreams: expected a list"),
    ],
)
def test_bad_values_stop_the_start(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(BASE + "proxy:\n" + text, environ={})


def test_unknown_upstream_key_warns() -> None:
    config = parse_config(
        BASE + "proxy:\n  upstreams: [{namespace: q.io, remoteurl: 'https://x', color: red}]\n",
        environ={},
    )
    assert config.warnings[0] == "unknown configuration key 'proxy.upstreams[0].color'"


def test_upstreams_take_the_top_level_ttl_unless_they_have_their_own() -> None:
    settings = proxy("  ttl: 2h\n  upstreams:\n"
                     "    - {namespace: a.io, remoteurl: 'https://a'}\n"
                     "    - {namespace: b.io, remoteurl: 'https://b', ttl: 0s}\n")
    assert [u.ttl for u in settings.upstreams] == [7200.0, 0.0]
