"""deploy/examples/*.yml and deploy/systemd/fastreg.service: what ships must load as written.

Each example loads with no error and no warning (an unknown or misspelt key warns), passes the
checks loading runs (health, debug, notifications, maintenance, auth, the S3 parameters), and the files an auth example names, once they exist, are read as they would be.
"""

from __future__ import annotations

import configparser
import dataclasses
import shlex
from pathlib import Path

import pytest
import yaml

from fastreg.auth import standalone
from fastreg.auth.middleware import check_auth
from fastreg.auth.settings import HtpasswdSettings, TokenSettings
from fastreg.config import Config, load_config, parse_config
from fastreg.storage.s3.params import S3Params
from tests.auth.tokens import make_key, write_bundle, write_htpasswd

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EXAMPLES = DEPLOY / "examples"
EXPECTED = {"filesystem.yml", "s3.yml", "token-auth.yml", "htpasswd.yml", "notifications.yml"}


def example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yml"))


def test_every_expected_example_ships() -> None:
    assert EXPECTED <= {p.name for p in example_files()}


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_example_loads_without_warnings(path: Path) -> None:
    # every section is parsed at load: health, debug server, notifications, maintenance, auth
    config = load_config(path, {})  # no REGISTRY_* from the test's environment
    assert config.warnings == ()
    if config.storage.driver == "s3":
        known = {f.name for f in dataclasses.fields(S3Params)}
        assert set(config.storage.parameters) <= known, "a key the s3 driver does not read"
        assert config.storage.params == S3Params.parse(config.storage.parameters)


def test_s3_example_shares_caches_in_redis() -> None:
    config = load_config(EXAMPLES / "s3.yml", {})
    params = S3Params.parse(config.storage.parameters)
    assert (params.bucket, params.region, params.secure) == ("registry", "eu-west-1", True)
    assert (config.storage.blobdescriptor_cache, config.storage.tags_cache) == ("redis", "redis")
    assert config.redis.addr == "127.0.0.1:6379"


def test_filesystem_example_is_for_the_proxy_and_systemd() -> None:
    config = load_config(EXAMPLES / "filesystem.yml", {})
    assert config.storage.driver == "filesystem"
    assert config.storage.parameters["rootdirectory"] == "/var/lib/registry"
    assert config.http.host_port() == ("127.0.0.1", 5000)  # the upstream of deploy/nginx
    assert config.http.relativeurls is False
    assert config.storage.purge.enabled
    assert not config.storage.gc.enabled


def _with_files_in(path: Path, tmp_path: Path, prefix: str) -> Config:
    """The example with the directory ``prefix`` of the paths it names moved to ``tmp_path``."""
    return parse_config(path.read_text().replace(prefix, f"{tmp_path}/"), {})


def test_htpasswd_example_reads_its_file(tmp_path: Path) -> None:
    config = _with_files_in(EXAMPLES / "htpasswd.yml", tmp_path, "/etc/docker/registry/")
    settings = config.auth
    assert isinstance(settings, HtpasswdSettings)
    write_htpasswd(Path(settings.path), {"alice": "alice-password"})
    check_auth(config)


def test_token_example_starts_registry_and_issuer(tmp_path: Path) -> None:
    config = _with_files_in(EXAMPLES / "token-auth.yml", tmp_path, "/etc/fastreg/")
    settings = config.auth
    assert isinstance(settings, TokenSettings) and settings.server is not None
    assert not settings.server.embedded  # `fastreg token-server` runs it apart
    key = make_key("ec")
    Path(settings.server.key).write_bytes(key.pem())
    assert settings.rootcertbundle is not None
    write_bundle(Path(settings.rootcertbundle), key)
    write_htpasswd(Path(settings.server.htpasswd), {"alice": "alice-password"})
    acl = {"rules": [{"users": ["alice"], "repositories": ["**"], "actions": ["*"]}]}
    Path(settings.server.acl).write_text(yaml.safe_dump(acl))
    check_auth(config)  # the registry: trusts the issuer's certificate
    _app, host, port = standalone.token_app(config, None)  # the issuer: key, users, ACL
    assert (host, port) == ("127.0.0.1", 5001)


def test_systemd_unit_runs_fastreg_serve() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read(DEPLOY / "systemd" / "fastreg.service")
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "fastreg" and argv[1] == "serve"
    assert argv[-1].endswith(".yml") and "--workers" in argv
    assert service["Type"] == "simple"
    assert service["Restart"] == "on-failure"
    assert service["User"] and service["User"] != "root"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/registry"
    assert service["NoNewPrivileges"] == "true"
    assert int(service["LimitNOFILE"]) >= 65536
    assert unit["Install"]["WantedBy"] == "multi-user.target"
