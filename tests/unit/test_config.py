"""fastreg.config: Distribution's config.yml, REGISTRY_* overrides, types, warnings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fastreg.auth.settings import HtpasswdSettings, TokenSettings
from fastreg.config import (
    Config,
    ConfigError,
    HTTPConfig,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
)
from fastreg.server.health_settings import Timing

# /etc/docker/registry/config.yml as shipped by Debian's docker-registry package.
DEBIAN_CONFIG = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/docker/registry
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""

MINIMAL = "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/reg\n"


def parse(text: str, **env: str) -> Config:
    return parse_config(text, environ=env)


# --- defaults and the Debian file -----------------------------------------------------------


def test_defaults_without_a_file() -> None:
    config = load_config(None, environ={})
    assert config.version == "0.1"
    assert config.storage.driver == "filesystem"
    assert dict(config.storage.parameters) == {"rootdirectory": "/var/lib/registry"}
    assert config.storage.delete_enabled is False
    assert config.storage.readonly is False
    assert config.storage.redirect_disable is False
    assert config.storage.blobdescriptor_cache is None
    assert config.storage.blobdescriptor_size == 10000
    assert config.http.addr == ":5000"
    assert config.http.net == "tcp"
    assert config.http.host_port() == ("0.0.0.0", 5000)
    assert config.http.relativeurls is False
    assert config.http.draintimeout_seconds == 0
    assert config.http.sendtimeout_seconds == 60.0
    assert config.log.level == "info"
    assert config.log.formatter == "text"
    assert config.log.accesslog_disabled is False
    assert config.schema1_enabled is False
    assert config.auth is None
    assert config.warnings == ()


def test_dataclass_defaults_match_loaded_defaults() -> None:
    assert load_config(None, environ={}) == Config()


def test_debian_default_config_loads_without_warnings() -> None:
    config = parse(DEBIAN_CONFIG)
    assert config.warnings == ()
    assert dict(config.log.fields) == {"service": "registry"}
    assert config.storage.driver == "filesystem"
    assert dict(config.storage.parameters) == {"rootdirectory": "/var/lib/docker-registry"}
    assert config.storage.blobdescriptor_cache == "inmemory"
    assert config.storage.delete_enabled is True
    assert config.http.host_port() == ("0.0.0.0", 5000)
    assert dict(config.http.headers) == {"X-Content-Type-Options": ("nosniff",)}
    assert config.auth == HtpasswdSettings(realm="basic-realm", path="/etc/docker/registry")
    assert config.health.storagedriver == Timing(interval=10.0, threshold=3)


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(DEBIAN_CONFIG)
    assert load_config(path, environ={}) == parse(DEBIAN_CONFIG)
    assert load_config(str(path), environ={}).storage.delete_enabled is True


@pytest.mark.skipif(
    not Path("/etc/docker/registry/config.yml").exists(), reason="no Debian registry config here"
)
def test_this_machines_registry_config_loads() -> None:
    config = load_config("/etc/docker/registry/config.yml", environ={})
    assert config.warnings == ()
    assert config.storage.driver == "filesystem"


def test_load_config_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "nope.yml", environ={})


def test_version_is_required_and_must_be_0_1() -> None:
    with pytest.raises(ConfigError, match="^version: missing"):
        parse("storage: inmemory\n")
    with pytest.raises(ConfigError, match="^version: missing"):
        parse("")
    with pytest.raises(ConfigError, match="^version: unsupported version '0.2'"):
        parse("version: 0.2\nstorage: inmemory\n")
    assert parse('version: "0.1"\nstorage: inmemory\n').version == "0.1"


def test_invalid_yaml_and_non_mapping_documents() -> None:
    with pytest.raises(ConfigError, match="invalid YAML"):
        parse("version: 0.1\nhttp: [unclosed\n")
    with pytest.raises(ConfigError, match="expected a mapping, got list"):
        parse("- version\n")


def test_config_is_frozen_and_raw_sections_are_read_only() -> None:
    config = parse(DEBIAN_CONFIG)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.http.addr = ":1"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.auth.realm = "x"  # type: ignore[misc,union-attr]
    with pytest.raises(TypeError):
        config.storage.parameters["rootdirectory"] = "/x"  # type: ignore[index]


# --- environment overrides -----------------------------------------------------------------


def test_env_overrides_a_bool_a_string_an_int_and_a_nested_key() -> None:
    config = parse(
        MINIMAL,
        REGISTRY_STORAGE_DELETE_ENABLED="true",
        REGISTRY_HTTP_ADDR=":5001",
        REGISTRY_HTTP_RELATIVEURLS="true",
        REGISTRY_STORAGE_CACHE_BLOBDESCRIPTORSIZE="5",
        REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="/x",
        REGISTRY_LOG_LEVEL="debug",
        REGISTRY_HTTP_DRAINTIMEOUT="1m30s",
    )
    assert config.storage.delete_enabled is True
    assert config.http.addr == ":5001"
    assert config.http.host_port() == ("0.0.0.0", 5001)
    assert config.http.relativeurls is True
    assert config.storage.blobdescriptor_size == 5
    assert dict(config.storage.parameters) == {"rootdirectory": "/x"}
    assert config.log.level == "debug"
    assert config.http.draintimeout_seconds == 90.0
    assert config.warnings == ()


def test_env_applies_without_a_file() -> None:
    config = load_config(None, environ={"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/data"})
    assert dict(config.storage.parameters) == {"rootdirectory": "/data"}


def test_env_driver_switch_replaces_the_driver_section_only() -> None:
    config = parse(
        DEBIAN_CONFIG,
        REGISTRY_STORAGE="s3",
        REGISTRY_STORAGE_S3_BUCKET="images",
        REGISTRY_STORAGE_S3_REGION="us-east-1",
    )
    assert config.storage.driver == "s3"
    assert dict(config.storage.parameters) == {"bucket": "images", "region": "us-east-1"}
    assert config.storage.delete_enabled is True  # kept
    assert config.storage.blobdescriptor_cache == "inmemory"  # kept


def test_env_driver_without_a_file_replaces_the_default_filesystem() -> None:
    config = load_config(None, environ={"REGISTRY_STORAGE_INMEMORY": ""})
    assert config.storage.driver == "inmemory"
    assert dict(config.storage.parameters) == {}
    assert load_config(None, environ={"REGISTRY_STORAGE": "inmemory"}).storage.driver == "inmemory"


def test_env_adding_a_second_driver_is_an_error() -> None:
    with pytest.raises(ConfigError, match="exactly one driver allowed, got filesystem, s3"):
        parse(MINIMAL, REGISTRY_STORAGE_S3_BUCKET="images")


def test_env_sets_a_whole_map_from_yaml_text() -> None:
    config = parse(DEBIAN_CONFIG, REGISTRY_HTTP_HEADERS='{"X-Frame-Options": ["DENY"]}')
    assert dict(config.http.headers) == {"X-Frame-Options": ("DENY",)}
    storage = parse(DEBIAN_CONFIG, REGISTRY_STORAGE="{inmemory: {}, delete: {enabled: false}}")
    assert storage.storage.driver == "inmemory"
    assert storage.storage.delete_enabled is False
    assert storage.storage.blobdescriptor_cache is None  # a map replaces all of storage


def test_env_matches_existing_free_form_keys_case_insensitively() -> None:
    text = "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    region: r\n    regionEndpoint: http://a\n"
    config = parse(text, REGISTRY_STORAGE_S3_REGIONENDPOINT="http://b")
    assert dict(config.storage.parameters) == {
        "bucket": "b", "region": "r", "regionEndpoint": "http://b"}
    config = parse(DEBIAN_CONFIG, REGISTRY_AUTH_HTPASSWD_PATH="/etc/htpasswd")
    assert config.auth == HtpasswdSettings(realm="basic-realm", path="/etc/htpasswd")


def test_env_indexes_lists_and_uses_go_field_names() -> None:
    config = parse(
        DEBIAN_CONFIG,
        REGISTRY_NOTIFICATIONS_ENDPOINTS_0_NAME="hook",
        REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL="http://hook/",
        REGISTRY_HEALTH_FILECHECKERS_0_FILE="/tmp/down",
    )
    (endpoint,) = config.notifications.endpoints
    assert (endpoint.name, endpoint.url) == ("hook", "http://hook/")
    assert config.health.files[0].file == "/tmp/down"
    with pytest.raises(ConfigError, match="REGISTRY_NOTIFICATIONS_ENDPOINTS_3_URL"):
        parse(DEBIAN_CONFIG, REGISTRY_NOTIFICATIONS_ENDPOINTS_3_URL="http://x/")


def test_env_with_a_wrong_type_names_the_key() -> None:
    with pytest.raises(
        ConfigError, match="^storage.delete.enabled: expected a boolean, got 'maybe'"
    ):
        parse(MINIMAL, REGISTRY_STORAGE_DELETE_ENABLED="maybe")


def test_unrecognized_env_warns_and_non_registry_env_is_ignored() -> None:
    env = {
        "REGISTRY_PORT": "tcp://10.0.0.1:5000",  # Kubernetes service links look like this
        "REGISTRY_HTTP_NOPE": "1",
        "REGISTRY_HTTP__ADDR": ":1",
        "REGISTRY_": ":1",
        "HTTP_ADDR": ":1",
    }
    config = parse_config(MINIMAL, environ=env)
    assert config.http.addr == ":5000"
    assert config.version == "0.1"
    assert config.warnings == (
        "ignoring unrecognized environment variable REGISTRY_",
        "ignoring unrecognized environment variable REGISTRY_HTTP_NOPE",
        "ignoring unrecognized environment variable REGISTRY_HTTP__ADDR",
        "ignoring unrecognized environment variable REGISTRY_PORT",
    )


def test_env_cannot_change_the_version() -> None:
    config = parse(MINIMAL, REGISTRY_VERSION="0.2")
    assert config.version == "0.1"
    assert len(config.warnings) == 1 and "REGISTRY_VERSION" in config.warnings[0]


def test_environ_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_HTTP_SECRET", "s3cret")
    assert parse_config(MINIMAL).http.secret == "s3cret"


# --- types ----------------------------------------------------------------------------------


S = "storage:\n  inmemory:\n"  # a driver, for the storage cases below


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http:\n  addr: [a, b]\n", "http.addr: expected a string, got list"),
        (S + "  delete:\n    enabled: maybe\n", "storage.delete.enabled: expected a boolean"),
        ("http:\n  relativeurls: 1\n", "http.relativeurls: expected a boolean, got 1"),
        ("http:\n  draintimeout: soon\n", "http.draintimeout: invalid duration 'soon'"),
        ("http:\n  sendtimeout: 0s\n", "http.sendtimeout: expected a positive duration"),
        ("http:\n  readtimeout: -1s\n", "http.readtimeout: expected a positive duration"),
        ("http:\n  headers: [a]\n", "http.headers: expected a mapping, got list"),
        ("http:\n  addr: '5000'\n", "http.addr: expected host:port"),
        ("http:\n  net: udp\n", "http.net: expected one of tcp, unix"),
        ("log:\n  level: verbose\n", "log.level: expected one of error, warn, info, debug"),
        ("log:\n  formatter: xml\n", "log.formatter: expected one of text, json, logstash"),
        (S + "  cache:\n    blobdescriptorsize: big\n", "storage.cache.blobdescriptorsize"),
        (S + "  cache:\n    blobdescriptor: disk\n", "storage.cache.blobdescriptor"),
        (S + "  cache:\n    blobdescriptor: redis\n", "needs redis.addr"),
        (S + "  maintenance:\n    readonly:\n      enabled: x\n", "readonly.enabled"),
        ("health:\n  storagedriver:\n    interval: x\n", "health.storagedriver.interval"),
        ("notifications:\n  endpoints: {a: 1}\n", "notifications.endpoints: expected a list"),
        ("compatibility:\n  schema1:\n    enabled: on-ish\n", "compatibility.schema1.enabled"),
        ("auth:\n  htpasswd: yes-please\n", "auth.htpasswd: expected a mapping"),
        ("auth:\n  htpasswd: {}\n  token: {}\n", "auth: exactly one auth type"),
    ],
)
def test_wrong_types_name_the_key(text: str, message: str) -> None:
    doc = "version: 0.1\n" + text if text.startswith("storage:") else MINIMAL + text
    with pytest.raises(ConfigError) as info:
        parse(doc)
    assert message in str(info.value)


def test_strings_true_false_are_booleans_and_scalars_are_strings() -> None:
    text = MINIMAL + "http:\n  relativeurls: 'TRUE'\n  secret: 12345\n  host: true\n"
    config = parse(text)
    assert config.http.relativeurls is True
    assert config.http.secret == "12345"
    assert config.http.host == "true"
    assert parse(MINIMAL + "log:\n  level: DEBUG\n").log.level == "debug"


def test_typed_values_in_the_file() -> None:
    text = """\
version: 0.1
log:
  level: warn
  formatter: json
  accesslog:
    disabled: true
  fields: {service: registry, replica: 3}
storage:
  inmemory:
  redirect:
    disable: true
  cache:
    blobdescriptor: redis
    blobdescriptorsize: 500
  maintenance:
    uploadpurging: {enabled: false, age: 168h, interval: 24h, dryrun: false}
    readonly:
      enabled: true
http:
  addr: 127.0.0.1:0
  prefix: /reg/
  host: https://reg.example.com
  draintimeout: 60s
  sendtimeout: 90s
  tls: {certificate: /c.pem, key: /k.pem}
  debug: {addr: localhost:5001}
redis:
  addr: localhost:6379
compatibility:
  schema1:
    enabled: true
"""
    config = parse(text)
    assert config.warnings == ()
    assert (config.log.level, config.log.formatter) == ("warn", "json")
    assert config.log.accesslog_disabled is True
    assert dict(config.log.fields) == {"service": "registry", "replica": "3"}
    assert config.storage.driver == "inmemory"
    assert dict(config.storage.parameters) == {}
    assert config.storage.redirect_disable is True
    assert config.storage.readonly is True
    assert config.storage.blobdescriptor_cache == "redis"
    assert config.storage.blobdescriptor_size == 500
    assert config.storage.purge.age == 168 * 3600.0
    assert not config.storage.purge.enabled
    assert config.http.host_port() == ("127.0.0.1", 0)
    assert (config.http.prefix, config.http.host) == ("/reg/", "https://reg.example.com")
    assert config.http.draintimeout_seconds == 60.0
    assert config.http.sendtimeout_seconds == 90.0
    assert (config.http.tls.certificate, config.http.tls.key) == ("/c.pem", "/k.pem")
    assert config.http.debug.addr == "localhost:5001"
    assert config.redis.addr == "localhost:6379"
    assert config.schema1_enabled is True


def test_deprecated_spellings_still_work() -> None:
    text = (
        "version: 0.1\nloglevel: debug\nstorage:\n  inmemory:\n  cache:\n    layerinfo: inmemory\n"
    )
    config = parse(text)
    assert config.log.level == "debug"
    assert config.storage.blobdescriptor_cache == "inmemory"
    assert "configuration key 'loglevel' is deprecated; use 'log.level'" in config.warnings


# --- warnings --------------------------------------------------------------------------------


def test_unknown_keys_warn_naming_the_dotted_key() -> None:
    text = MINIMAL + "http:\n  foo: 1\n  Addr: ':1'\nbogus: true\nredis:\n  cluster: x\n"
    config = parse(text)
    assert config.http.addr == ":5000"  # YAML keys are case-sensitive, as in Distribution
    assert set(config.warnings) == {
        "unknown configuration key 'http.foo'",
        "unknown configuration key 'http.Addr'",
        "unknown configuration key 'bogus'",
        "unknown configuration key 'redis.cluster'",
    }


def test_keys_distribution_knows_but_fastreg_does_not_warn_as_not_supported() -> None:
    text = """\
version: 0.1
log:
  hooks:
    - type: mail
storage:
  filesystem: {}
  tag:
    concurrencylimit: 4
http:
  http2:
    disabled: true
  tls:
    letsencrypt:
      email: a@example.com
reporting:
  bugsnag: {apikey: k}
proxy:
  remoteurl: https://registry-1.docker.io
policy:
  repository:
    classes: [image]
catalog:
  maxentries: 10
compatibility:
  schema1:
    signingkeyfile: /key.json
"""
    config = parse(text)
    expected = {
        "log.hooks",
        "storage.tag",
        "http.http2",
        "http.tls.letsencrypt",
        "reporting",
        "policy",
        "catalog",
        "compatibility.schema1.signingkeyfile",
    }
    assert set(config.warnings) == {
        f"configuration key '{k}' is not supported yet" for k in expected
    }


def test_every_section_parses_without_warnings() -> None:
    text = """\
version: 0.1
storage:
  s3: {bucket: b, region: r, chunksize: 5242880, storageclass: STANDARD_IA}
  redirect: {disable: false}
  maintenance:
    uploadpurging: {enabled: true, age: 168h, interval: 24h, dryrun: false}
auth:
  token: {realm: https://auth/, service: reg, issuer: me, rootcertbundle: /b.pem}
notifications:
  events: {includereferences: true}
  endpoints:
    - name: l
      url: https://l/
      headers: {Authorization: [Bearer x]}
      timeout: 1s
      threshold: 10
      backoff: 1s
      ignore: {mediatypes: [a/b], actions: [pull]}
redis:
  addr: localhost:6379
  pool: {maxidle: 16, maxactive: 64, idletimeout: 300s}
health:
  file: [{file: /f, interval: 10s}]
  http: [{uri: http://x/, statuscode: 200, timeout: 3s}]
  tcp: [{addr: 'x:1', timeout: 3s}]
http:
  debug: {addr: localhost:5001, prometheus: {enabled: true, path: /metrics}}
  tls: {certificate: /c, key: /k, clientcas: [/ca], minimumtls: tls1.2}
"""
    config = parse(text)
    assert config.warnings == ()
    assert config.storage.parameters["chunksize"] == 5242880
    assert (config.storage.params.chunksize, config.storage.params.storageclass) == (
        5242880, "STANDARD_IA")
    assert config.notifications.endpoints[0].headers == (("Authorization", "Bearer x"),)
    assert config.notifications.include_references is True
    assert isinstance(config.auth, TokenSettings) and config.auth.issuer == "me"
    assert config.redis.maxactive == 64 and config.redis.idletimeout == 300.0
    assert [c.uri for c in config.health.http] == ["http://x/"]
    assert config.http.debug.prometheus and config.http.tls.clientcas == ("/ca",)


# --- storage drivers ----------------------------------------------------------------------------


def test_exactly_one_storage_driver() -> None:
    with pytest.raises(ConfigError, match="^storage: no driver configured$"):
        parse("version: 0.1\n")
    with pytest.raises(ConfigError, match="^storage: no driver configured$"):
        parse("version: 0.1\nstorage:\n  delete: {enabled: true}\n  cache: {}\n")
    with pytest.raises(ConfigError, match="got filesystem, s3"):
        parse("version: 0.1\nstorage:\n  s3: {bucket: b}\n  filesystem: {}\n")


def test_storage_sections_that_are_not_drivers() -> None:
    text = (
        "version: 0.1\nstorage:\n  inmemory:\n  delete: {enabled: true}\n  cache: {}\n"
        "  maintenance: {}\n  redirect: {}\n"
    )
    config = parse(text)
    assert config.storage.driver == "inmemory"
    assert dict(config.storage.parameters) == {}


def test_storage_and_auth_one_word_forms() -> None:
    config = parse("version: 0.1\nstorage: inmemory\n")
    assert config.storage.driver == "inmemory"
    # `auth: silly` is `auth: {silly: {}}`, an access controller fastreg does not have
    with pytest.raises(ConfigError, match="^auth.silly: unsupported access controller"):
        parse("version: 0.1\nstorage: inmemory\nauth: silly\n")


def test_filesystem_rootdirectory_defaults() -> None:
    config = parse("version: 0.1\nstorage:\n  filesystem:\n")
    assert dict(config.storage.parameters) == {"rootdirectory": "/var/lib/registry"}


def test_driver_parameters_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="^storage.filesystem: expected a mapping, got '/x'"):
        parse("version: 0.1\nstorage:\n  filesystem: /x\n")


# --- headers ---------------------------------------------------------------------------------


def test_headers_are_normalised_to_tuples_of_strings() -> None:
    text = MINIMAL + (
        "http:\n  headers:\n    X-List: [a, b]\n    X-String: plain\n    X-Number: 5\n"
        "    X-Empty:\n"
    )
    headers = parse(text).http.headers
    assert dict(headers) == {
        "X-List": ("a", "b"),
        "X-String": ("plain",),
        "X-Number": ("5",),
        "X-Empty": (),
    }


def test_header_values_must_be_scalars() -> None:
    with pytest.raises(
        ConfigError, match=r"^http.headers.X-A\[0\]: expected a string, got mapping"
    ):
        parse(MINIMAL + "http:\n  headers:\n    X-A: [{a: b}]\n")


# --- durations, sizes, addresses ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("300ms", 0.3),
        ("1h", 3600.0),
        ("2h45m", 9900.0),
        ("1.5h", 5400.0),
        ("1h0m0.5s", 3600.5),
        ("500us", 0.0005),
        ("500µs", 0.0005),
        ("10ns", 1e-8),
        ("-1s", -1.0),
        ("0", 0.0),
        (0, 0.0),
        (1_000_000_000, 1.0),  # bare numbers are nanoseconds, as Go decodes them
        (1.5e9, 1.5),
    ],
)
def test_parse_duration(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "10", "s", "10 s", "1d", "ten seconds", "1s2", "--1s"])
def test_parse_duration_rejects_garbage(value: str) -> None:
    with pytest.raises(ConfigError, match="invalid duration"):
        parse_duration(value)


def test_parse_duration_rejects_booleans() -> None:
    with pytest.raises(ConfigError):
        parse_duration(True)


def test_parse_size() -> None:
    assert parse_size(5242880) == 5242880
    assert parse_size("5242880") == 5242880
    assert parse_size(0) == 0
    for bad in ("5MiB", "-1", "", -1, True):
        with pytest.raises(ConfigError, match="invalid size"):
            parse_size(bad)


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        (":5000", ("0.0.0.0", 5000)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:5000", ("::1", 5000)),
        ("[::]:443", ("::", 443)),
        ("localhost:5000", ("localhost", 5000)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ],
)
def test_host_port(addr: str, expected: tuple[str, int]) -> None:
    assert HTTPConfig(addr=addr).host_port() == expected


@pytest.mark.parametrize("addr", ["5000", "localhost", "::1:5000", "host:http", "h:70000", ""])
def test_host_port_rejects_bad_addresses(addr: str) -> None:
    with pytest.raises(ConfigError, match="^http.addr: "):
        HTTPConfig(addr=addr).host_port()


def test_unix_socket_address() -> None:
    config = parse(MINIMAL + "http:\n  net: unix\n  addr: /run/registry.sock\n")
    assert (config.http.net, config.http.addr) == ("unix", "/run/registry.sock")
    with pytest.raises(ConfigError, match="not tcp"):
        config.http.host_port()
