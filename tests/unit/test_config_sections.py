"""fastreg.config parses every section at load: storage driver keys against each driver's key table,
every feature's `parse(section)`, one set of converters (Distribution's Go rules)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fastreg.auth.settings import HtpasswdSettings
from fastreg.config import Config, ConfigError, parse_config
from fastreg.config.convert import as_bool, as_int, as_size
from fastreg.notify.config import NotifyConfig
from fastreg.registry.cache.redis import RedisSettings
from fastreg.server.health_settings import DebugSettings, HealthSettings
from fastreg.storage import factory
from fastreg.storage.filesystem import FilesystemParams
from fastreg.storage.s3.params import S3Params


def parse(text: str, **env: str) -> Config:
    return parse_config("version: 0.1\n" + text, environ=env)


def fs(params: str) -> str:
    return "storage:\n  filesystem:\n" + "".join(f"    {line}\n" for line in params.split(";"))


# --- storage driver keys -------------------------------------------------------------------


def test_a_misspelt_driver_key_warns_naming_it() -> None:
    config = parse(fs("rootdirectry: /srv/data"))
    assert config.warnings == ("unknown configuration key 'storage.filesystem.rootdirectry'",)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("rootdirectory: [a, b]", "storage.filesystem.rootdirectory: expected a string, got list"),
        ("maxthreads: lots", "storage.filesystem.maxthreads: expected an integer, got 'lots'"),
        ("rootdirectory: {a: 1}", "storage.filesystem.rootdirectory: expected a string, got mapping"),
    ],
)
def test_a_wrongly_typed_driver_key_stops_the_load_naming_it(params: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(fs(params))
    assert str(info.value) == message


def test_s3_typos_and_distribution_keys_fastreg_lacks_warn_by_name() -> None:
    config = parse(
        "storage:\n  s3:\n    bucket: b\n    region: us-east-1\n    bukcet: b\n"
        "    objectacl: private\n    usedualstack: true\n    accelerate: false\n"
    )
    assert set(config.warnings) == {
        "unknown configuration key 'storage.s3.bukcet'",
        "configuration key 'storage.s3.objectacl' is not supported yet",
        "configuration key 'storage.s3.usedualstack' is not supported yet",
        "configuration key 'storage.s3.accelerate' is not supported yet",
    }
    assert isinstance(config.storage.params, S3Params) and config.storage.params.bucket == "b"


def test_driver_semantic_errors_are_found_at_load() -> None:
    with pytest.raises(ConfigError, match="^storage.ceph: storage driver not supported"):
        parse("storage:\n  ceph: {}\n")
    with pytest.raises(ConfigError, match="^storage.s3.bucket: required$"):
        parse("storage:\n  s3:\n    region: us-east-1\n")
    with pytest.raises(ConfigError, match="^storage.s3.chunksize: 1 is not between"):
        parse("storage:\n  s3:\n    bucket: b\n    region: r\n    chunksize: 1\n")


MINIMAL_PARAMS: dict[str, dict[str, Any]] = {
    "filesystem": {"rootdirectory": "/srv"},
    "inmemory": {},
    "s3": {"bucket": "b", "region": "us-east-1"},
    "s3aws": {"bucket": "b", "region": "us-east-1"},
    "azure": {"accountname": "a", "accountkey": "a2V5", "container": "c"},
    "gcs": {"bucket": "b"},
    "swift": {"username": "u", "password": "p", "authurl": "http://k/v3", "container": "c"},
    "oss": {"accesskeyid": "a", "accesskeysecret": "s", "region": "oss-cn-hangzhou",
            "bucket": "b"},
}


@pytest.mark.parametrize("driver", sorted(MINIMAL_PARAMS))
def test_every_driver_has_a_key_table(driver: str) -> None:
    module = factory.parameters_module(driver)
    assert module is not None
    params = {**MINIMAL_PARAMS[driver], "nosuchkey": 1}
    text = "storage:\n  " + driver + ": " + repr(params).replace("'", '"') + "\n"
    config = parse(text)
    assert config.warnings == (f"unknown configuration key 'storage.{driver}.nosuchkey'",)
    assert config.storage.params == module.parse(MINIMAL_PARAMS[driver])


def test_driver_parameters_from_the_environment_are_checked_and_parsed() -> None:
    config = parse(
        "storage:\n  s3:\n    bucket: b\n",
        REGISTRY_STORAGE_S3_REGION="eu-west-1",
        REGISTRY_STORAGE_S3_CHUNKSIZE="10485760",
        REGISTRY_STORAGE_S3_BUKCET="x",
    )
    assert config.storage.params.region == "eu-west-1"
    assert config.storage.params.chunksize == 10 * 1024 * 1024
    assert config.warnings == ("unknown configuration key 'storage.s3.bukcet'",)
    config = parse(fs("rootdirectory: /srv"), REGISTRY_STORAGE_FILESYSTEM_MAXTHREADS="8")
    assert config.storage.params == FilesystemParams("/srv", 8)
    with pytest.raises(ConfigError, match="^storage.filesystem.maxthreads: expected an integer"):
        parse(fs("rootdirectory: /srv"), REGISTRY_STORAGE_FILESYSTEM_MAXTHREADS="lots")


# --- every feature's section, parsed at load --------------------------------------------------


S = "storage:\n  inmemory:\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("health:\n  tcp: [{addr: nowhere}]\n", "health.tcp[0].addr: expected host:port"),
        ("health:\n  http: [{uri: http://x/, statuscode: ok}]\n", "health.http[0].statuscode"),
        ("notifications:\n  endpoints: [{name: a, url: ftp://x}]\n", "endpoints[0].url"),
        ("notifications:\n  spool: {maxbytes: 10}\n", "notifications.spool.maxbytes"),
        ("auth:\n  htpasswd: {realm: r}\n", "auth.htpasswd.path: required"),
        ("auth:\n  token: {realm: r, service: s, issuer: i}\n", "rootcertbundle or jwks"),
        ("redis:\n  db: first\n", "redis.db: expected an integer"),
        ("redis:\n  addr: localhost:port\n", "redis.addr: expected host:port"),
        ("storage:\n  inmemory:\n  maintenance:\n    gc: {interval: -1s}\n",
         "storage.maintenance.gc: interval must be positive"),
        ("storage:\n  inmemory:\n  maintenance:\n    uploadpurging: {age: soon}\n",
         "storage.maintenance.uploadpurging.age: invalid duration"),
        ("http:\n  debug: {prometheus: {enabled: true, path: metrics}}\n",
         "http.debug.prometheus.path: must start with '/'"),
        ("http:\n  debug: {addr: 'localhost'}\n", "http.debug.addr: expected host:port"),
    ],
)
def test_a_bad_value_in_any_section_stops_the_load(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text if text.startswith("storage:") else S + text)
    assert message in str(info.value)


def test_config_holds_typed_settings_not_mappings() -> None:
    config = parse(
        S + "auth:\n  htpasswd: {realm: r, path: /p}\nredis:\n  addr: 'r:6379'\n"
        "health:\n  file: [{file: /down}]\nhttp:\n  debug: {addr: 'localhost:5001'}\n"
    )
    assert isinstance(config.auth, HtpasswdSettings)
    assert isinstance(config.notifications, NotifyConfig)
    assert isinstance(config.redis, RedisSettings) and config.redis.host_port() == ("r", 6379)
    assert isinstance(config.health, HealthSettings) and config.health.files[0].file == "/down"
    assert config.http.debug == DebugSettings("localhost:5001", "localhost", 5001)
    for name in ("auth", "notifications", "redis", "health", "validation"):
        assert dataclasses.is_dataclass(getattr(config, name)), name
    assert not {"policy"} & {f.name for f in dataclasses.fields(Config)}


def test_proxy_section_is_parsed_without_warnings() -> None:
    config = parse(S + "proxy:\n  remoteurl: https://registry-1.docker.io\n  ttl: 1h\n")
    assert config.warnings == ()
    assert config.proxy.default is not None and config.proxy.default.ttl == 3600.0


# --- one converter set ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [("10", 10), ("0x10", 16), ("010", 8), ("0o10", 8), ("0b11", 3), ("1_000", 1000),
     ("-5", -5), ("+5", 5), (" 7 ", 7), ("0", 0)],
)
def test_integers_follow_go_parseint_base_0(text: str, number: int) -> None:
    assert as_int(text, "k") == number


@pytest.mark.parametrize("value", ["1.5", "ten", "0x", "08", "1__0", "", True, 1.0, [1]])
def test_integers_refuse_what_go_refuses(value: Any) -> None:
    with pytest.raises(ConfigError, match="^k: expected an integer"):
        as_int(value, "k")


def test_booleans_follow_go_parsebool_and_sizes_are_non_negative_integers() -> None:
    assert [as_bool(v, "k") for v in ("1", "t", "TRUE", "True", "0", "f", "false")] == [
        True, True, True, True, False, False, False]
    with pytest.raises(ConfigError, match="^k: expected a boolean"):
        as_bool("yes-ish", "k")
    assert as_size("0x1000", "k") == 4096
    with pytest.raises(ConfigError, match="^k: invalid size"):
        as_size(-1, "k")


def test_one_integer_rule_for_core_keys_and_every_driver() -> None:
    """Before, storage/rest.py read `int(x)` and s3/params.py `int(x, 0)`: "010" was 10 for
    azure, an error for s3, and 10 for `storage.cache.blobdescriptorsize`."""
    s3 = parse("storage:\n  s3: {bucket: b, region: r, maxretries: '010'}\n")
    azure = parse(
        "storage:\n  azure: {accountname: a, accountkey: a2V5, container: c, maxretries: '010'}\n"
    )
    cache = parse(S + "  cache: {blobdescriptor: inmemory, blobdescriptorsize: '010'}\n")
    assert s3.storage.params.maxretries == azure.storage.params.maxretries == 8
    assert cache.storage.blobdescriptor_size == 8
