"""skopeo through access control: the built-in issuer (embedded and `fastreg token-server`),
htpasswd, and `skopeo login`; and Distribution 2.8 accepting the issuer's tokens (libtrust kid).

skopeo sends credentials over plain HTTP to 127.0.0.1 with `--tls-verify=false`, which is how
every registry here listens.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import (
    ISSUER,
    SERVERS_KEY,
    SERVICE,
    ServerFactory,
    ServerProcess,
    Skopeo,
    SkopeoError,
    fastreg_env,
    free_port,
    registry_config,
    token_auth,
)
from .images import make_oci_image, oci_ref_digest

pytestmark = pytest.mark.integration

@pytest.fixture
def private_skopeo(skopeo: Skopeo, tmp_path: Path) -> Skopeo:
    """skopeo with an auth file of its own (`skopeo login` writes there)."""
    home = tmp_path / "skopeo-home"
    for sub in ("run", ".config", "tmp"):
        (home / sub).mkdir(parents=True)
    authfile = home / "auth.json"
    authfile.write_text("{}")
    return Skopeo(home=home, authfile=authfile, policy=skopeo.policy,
                  registries_conf=skopeo.registries_conf, registries_d=skopeo.registries_d)


@pytest.fixture
def own_fastreg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[
    Callable[[Path, int, dict], ServerProcess]
]:
    """Start fastreg on a port chosen beforehand (its realm must name that port)."""
    started: list[ServerProcess] = []
    request.node.stash.setdefault(SERVERS_KEY, [])

    def start(root: Path, port: int, extra: dict) -> ServerProcess:
        work = tmp_path / f"fastreg-{port}"
        work.mkdir()
        cfg = work / "config.yml"
        cfg.write_text(registry_config(root, port, extra))
        server = ServerProcess("fastreg", root, port, cfg,
                               [sys.executable, "-m", "fastreg", "serve", str(cfg)], fastreg_env(),
                               work / "server.log")
        started.append(server)
        request.node.stash[SERVERS_KEY].append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


def test_skopeo_through_the_embedded_issuer(
    own_fastreg: Callable[[Path, int, dict], ServerProcess], skopeo: Skopeo,
    issuer_files: dict[str, str], tmp_path: Path,
) -> None:
    port = free_port()
    server = own_fastreg(tmp_path / "root", port, {"auth": {"token": {
        "realm": f"http://127.0.0.1:{port}/token", "service": SERVICE, "issuer": ISSUER,
        "tokenserver": {"key": issuer_files["key"], "htpasswd": issuer_files["htpasswd"],
                        "acl": issuer_files["acl"], "embedded": True},
    }}})
    img = make_oci_image(tmp_path / "src", "latest", layers=[1500, 40_000])
    ref = f"docker://{server.host}/alice/app:1.0"
    skopeo("copy", "--dest-creds", "alice:alice-pw", f"oci:{tmp_path / 'src'}:latest", ref)
    skopeo("copy", "--src-creds", "alice:alice-pw", ref, f"oci:{tmp_path / 'back'}:latest")
    assert oci_ref_digest(tmp_path / "back", "latest") == img.manifest_digest
    # bob may not pull alice's repository, nor may anyone without credentials push
    with pytest.raises(SkopeoError, match="(?i)unauthorized|authentication required|denied"):
        skopeo("copy", "--src-creds", "bob:bob-pw", ref, f"oci:{tmp_path / 'bob'}:latest")
    with pytest.raises(SkopeoError, match="(?i)unauthorized|authentication required|denied"):
        skopeo("copy", f"oci:{tmp_path / 'src'}:latest", f"docker://{server.host}/alice/x:1")
    with pytest.raises(SkopeoError, match="(?i)unauthorized|authentication required|denied"):
        skopeo("copy", "--dest-creds", "alice:wrong", f"oci:{tmp_path / 'src'}:latest", ref)


def test_skopeo_login_with_the_standalone_issuer_on_fastreg_and_distribution(
    token_server: str, issuer_files: dict[str, str], fastreg_server: ServerFactory,
    distribution_server: ServerFactory, private_skopeo: Skopeo, tmp_path: Path,
) -> None:
    """The same tokens work on fastreg and on CNCF Distribution 2.8 (libtrust kid, RS256)."""
    img = make_oci_image(tmp_path / "src", "latest", layers=[2048])
    auth = token_auth(token_server, issuer_files["cert"])
    for factory in (fastreg_server, distribution_server):
        server = factory(tmp_path / f"root-{id(factory)}", auth)
        private_skopeo("login", "--tls-verify=false", "--authfile", str(private_skopeo.authfile),
                       "-u", "alice", "-p", "alice-pw", server.host)
        ref = f"docker://{server.host}/shared/base:1"
        private_skopeo("copy", f"oci:{tmp_path / 'src'}:latest", ref)
        assert private_skopeo.list_tags(f"docker://{server.host}/shared/base") == ["1"]
        private_skopeo("logout", "--authfile", str(private_skopeo.authfile), server.host)
        with pytest.raises(SkopeoError):
            private_skopeo("copy", f"oci:{tmp_path / 'src'}:latest", ref)
        # bob can pull shared/* but not push there
        private_skopeo("copy", "--src-creds", "bob:bob-pw", ref,
                       f"oci:{tmp_path / f'bob-{server.kind}'}:latest")
        assert oci_ref_digest(tmp_path / f"bob-{server.kind}", "latest") == img.manifest_digest
        with pytest.raises(SkopeoError):
            private_skopeo("copy", "--dest-creds", "bob:bob-pw", f"oci:{tmp_path / 'src'}:latest",
                           f"docker://{server.host}/shared/base:2")


def test_skopeo_with_htpasswd(fastreg_server: ServerFactory, skopeo: Skopeo,
                              issuer_files: dict[str, str], tmp_path: Path) -> None:
    server = fastreg_server(tmp_path / "root", {"auth": {"htpasswd": {
        "realm": "fastreg", "path": issuer_files["htpasswd"]}}})
    img = make_oci_image(tmp_path / "src", "latest", layers=[3000, 5000])
    ref = f"docker://{server.host}/team/app:2"
    skopeo("copy", "--dest-creds", "bob:bob-pw", f"oci:{tmp_path / 'src'}:latest", ref)
    skopeo("copy", "--src-creds", "alice:alice-pw", ref, f"oci:{tmp_path / 'back'}:latest")
    assert oci_ref_digest(tmp_path / "back", "latest") == img.manifest_digest
    with pytest.raises(SkopeoError, match="(?i)unauthorized|authentication required"):
        skopeo("copy", "--dest-creds", "bob:nope", f"oci:{tmp_path / 'src'}:latest", ref)
    with pytest.raises(SkopeoError, match="(?i)unauthorized|authentication required"):
        skopeo("inspect", ref)
