"""fastreg behind Debian's nginx terminating TLS, with deploy/nginx/fastreg.conf as shipped.

The test makes its own CA and a server certificate for 127.0.0.1/localhost, renders
deploy/nginx/fastreg.conf with deploy/nginx/render.py into a temporary prefix (a minimal top-level
nginx.conf around it), and drives fastreg (plain HTTP on 127.0.0.1) through nginx (HTTPS on
127.0.0.1): skopeo round trips with the certificate verified against that CA, a 1 GiB layer
included, and the Location headers a client sees through the proxy.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .conftest import (
    PORT_ATTEMPTS,
    READY_TIMEOUT,
    REPO_ROOT,
    SERVERS_KEY,
    SKOPEO,
    STOP_TIMEOUT,
    ServerFactory,
    ServerProcess,
    Skopeo,
    SkopeoError,
    free_port,
)
from .images import (
    MT_OCI_LAYER_TAR,
    digest_of,
    dir_transport_manifest,
    file_digest,
    layout_blob_digests,
    make_oci_image,
    oci_ref_digest,
    read_blob,
)

pytestmark = pytest.mark.integration

NGINX_DIR = REPO_ROOT / "deploy" / "nginx"
GIB = 1024 * 1024 * 1024
MAX_SERVER_RSS = 512 * 1024 * 1024


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class PKI:
    ca: Path  # the CA certificate (PEM): what clients trust
    cert: Path  # the server certificate for 127.0.0.1 and localhost, signed by the CA
    key: Path
    certs_dir: Path  # containers/image's certs.d layout: every *.crt in it is a trusted CA

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(directory: Path) -> PKI:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("fastreg test CA"))
        .issuer_name(_name("fastreg test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    certs_dir = directory / "certs.d"
    certs_dir.mkdir()
    pki = PKI(
        ca=certs_dir / "ca.crt",
        cert=directory / "server.crt",
        key=directory / "server.key",
        certs_dir=certs_dir,
    )
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


# --------------------------------------------------------------------------- nginx

_TOP_LEVEL = """\
{user}
worker_processes 2;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;

events {{
    worker_connections 256;
}}

http {{
    log_format proxied '$remote_addr "$request" $status $body_bytes_sent $server_protocol '
                       'upstream=$upstream_addr rt=$request_time';
    access_log {prefix}/access.log proxied;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;

    include {prefix}/fastreg.conf;
}}
"""


@dataclass(eq=False)
class Nginx:
    """Debian's nginx in the foreground, configured from deploy/nginx/fastreg.conf."""

    prefix: Path
    port: int
    upstream: str
    pki: PKI
    kind: str = "nginx"
    proc: subprocess.Popen[bytes] | None = None
    _out: Any = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    @property
    def log_path(self) -> Path:
        return self.prefix / "error.log"

    def output(self) -> str:
        parts = []
        for name in ("stdout.log", "error.log", "access.log"):
            try:
                text = (self.prefix / name).read_text(errors="replace")
            except FileNotFoundError:
                continue
            parts.append(f"--- {name} ---\n{text[-10_000:]}")
        return "\n".join(parts)

    def access_log(self) -> list[str]:
        return (self.prefix / "access.log").read_text().splitlines()

    def render(self) -> None:
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.prefix / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable, str(NGINX_DIR / "render.py"),
                "--server-name", "localhost",
                "--listen", self.host,
                "--cert", str(self.pki.cert),
                "--key", str(self.pki.key),
                "--upstream", self.upstream,
                "--output", str(self.prefix / "fastreg.conf"),
            ],
            check=True,
            timeout=30,
        )  # fmt: skip
        # as root, nginx's workers would switch to `nobody`, who cannot enter pytest's tmp dirs
        user = "user root;" if os.geteuid() == 0 else ""
        (self.prefix / "nginx.conf").write_text(_TOP_LEVEL.format(user=user, prefix=self.prefix))

    def start(self) -> Nginx:
        self.render()
        nginx = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
        if nginx is None:
            pytest.fail("nginx is not installed (Debian: apt-get install -y nginx)", pytrace=False)
        self._out = open(self.prefix / "stdout.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [nginx, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"),
             "-e", str(self.prefix / "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=self.pki.client_context()),
        )
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no attempt made"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise NginxExited(f"nginx exited with {self.proc.returncode}\n{self.output()}")
            try:
                with opener.open(f"{self.url}/v2/", timeout=2) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
            except (urllib.error.URLError, OSError) as e:
                last = repr(e)
            time.sleep(0.05)
        pytest.fail(f"{self.url}/v2/ not ready ({last})\n{self.output()}", pytrace=False)

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()  # fast shutdown of the master and its workers
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=STOP_TIMEOUT)
        if self._out is not None:
            self._out.close()
            self._out = None


class NginxExited(Exception):
    pass


@dataclass
class Proxied:
    fastreg: ServerProcess
    nginx: Nginx
    pki: PKI

    @property
    def host(self) -> str:
        """What clients use: nginx's TLS address."""
        return self.nginx.host

    def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> http.client.HTTPResponse:
        """One HTTPS request through nginx, the certificate checked against the test CA (for
        127.0.0.1); a ``Host`` in ``headers`` replaces the default ``127.0.0.1:<port>``."""
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.nginx.port, context=self.pki.client_context(), timeout=30
        )
        try:
            conn.request(method, target, body=body, headers=headers or {})
            resp = conn.getresponse()
            resp.read()
            return resp
        finally:
            conn.close()


ProxiedFactory = Callable[..., Proxied]


@pytest.fixture
def behind_nginx(
    fastreg_server: ServerFactory,
    pki: PKI,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[ProxiedFactory]:
    """``behind_nginx(root, relativeurls=False)`` -> fastreg on plain HTTP behind nginx on TLS."""
    started: list[Nginx] = []

    def start(root: Path, relativeurls: bool = False) -> Proxied:
        registry = fastreg_server(root, {"http": {"relativeurls": relativeurls}})
        for attempt in range(PORT_ATTEMPTS):
            nginx = Nginx(
                prefix=tmp_path_factory.mktemp("nginx"),
                port=free_port(),
                upstream=registry.host,
                pki=pki,
            )
            started.append(nginx)
            request.node.stash.setdefault(SERVERS_KEY, []).append(nginx)
            try:
                nginx.start()
            except NginxExited as exc:
                # free_port() is racy: another process may take the port first
                if attempt + 1 < PORT_ATTEMPTS and "Address already in use" in str(exc):
                    continue
                pytest.fail(str(exc), pytrace=False)
            return Proxied(fastreg=registry, nginx=nginx, pki=pki)
        raise AssertionError("unreachable")

    try:
        yield start
    finally:
        for nginx in started:
            nginx.stop()


# --------------------------------------------------------------------------- skopeo over TLS


def skopeo_tls(
    skopeo: Skopeo, certs_dir: Path | None, *args: str, binary: bool = False
) -> subprocess.CompletedProcess[Any]:
    """skopeo with TLS verification on; ``certs_dir`` (or nothing) holds the trusted CA.

    The shared Skopeo helper turns verification off for every docker:// reference, so the
    command line is built here; the hermetic HOME, policy and auth file are the helper's.
    """
    sub, rest = args[0], list(args[1:])
    flags = ["--authfile", str(skopeo.authfile)]
    if sub == "copy":
        flags += ["--src-tls-verify=true", "--dest-tls-verify=true"]
        if certs_dir is not None:
            flags += ["--src-cert-dir", str(certs_dir), "--dest-cert-dir", str(certs_dir)]
    else:
        flags += ["--tls-verify=true"]
        if certs_dir is not None:
            flags += ["--cert-dir", str(certs_dir)]
    argv = [
        SKOPEO, "--policy", str(skopeo.policy), "--registries.d", str(skopeo.registries_d),
        sub, *flags, *rest,
    ]  # fmt: skip
    proc = subprocess.run(
        argv,
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=not binary,
        env=skopeo.env(),
        timeout=skopeo.timeout,
    )
    return proc


def skopeo_ok(skopeo: Skopeo, certs_dir: Path, *args: str, binary: bool = False) -> Any:
    proc = skopeo_tls(skopeo, certs_dir, *args, binary=binary)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace") if binary else proc.stderr
        raise SkopeoError(f"skopeo {' '.join(args)} failed (exit {proc.returncode}):\n{err}")
    return proc.stdout


def fastreg_get(registry: ServerProcess, path: str, accept: str) -> tuple[int, bytes]:
    """A plain-HTTP GET straight to fastreg, around nginx."""
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Accept": accept})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- round trips


def test_skopeo_round_trip_over_verified_tls(
    behind_nginx: ProxiedFactory, skopeo: Skopeo, tmp_path: Path
) -> None:
    proxied = behind_nginx(tmp_path / "root")
    src = tmp_path / "src"
    img = make_oci_image(src, "latest", layers=[1500, 200_000, 4 * 1024 * 1024])
    ref = f"docker://{proxied.host}/library/multi:1.0"
    certs = proxied.pki.certs_dir

    skopeo_ok(skopeo, certs, "copy", "--preserve-digests", f"oci:{src}:latest", ref)

    raw = skopeo_ok(skopeo, certs, "inspect", "--raw", ref, binary=True)
    assert raw == img.manifest_bytes
    by_digest = f"docker://{proxied.host}/library/multi@{img.manifest_digest}"
    assert skopeo_ok(skopeo, certs, "inspect", "--raw", by_digest, binary=True) == raw
    # what went through nginx is what fastreg stored
    status, direct = fastreg_get(
        proxied.fastreg,
        "/v2/library/multi/manifests/1.0",
        "application/vnd.oci.image.manifest.v1+json",
    )
    assert (status, digest_of(direct)) == (200, img.manifest_digest)

    dst = tmp_path / "back"
    skopeo_ok(skopeo, certs, "copy", "--preserve-digests", ref, f"oci:{dst}:latest")
    assert oci_ref_digest(dst, "latest") == img.manifest_digest
    assert layout_blob_digests(dst) == {img.manifest_digest, *img.blob_digests}
    for d in img.blob_digests:
        assert read_blob(dst, d) == read_blob(src, d)

    # every blob went up and came down through nginx
    log = proxied.nginx.access_log()
    for d in img.blob_digests:
        assert any(f'"GET /v2/library/multi/blobs/{d} ' in line and " 200 " in line for line in log)
    assert any('"PUT /v2/library/multi/blobs/uploads/' in line and " 201 " in line for line in log)

    # TLS is really verified: without the CA the same registry is refused
    refused = skopeo_tls(skopeo, None, "inspect", "--raw", ref)
    assert refused.returncode != 0
    assert "certificate" in refused.stderr and "unknown authority" in refused.stderr, refused.stderr


@pytest.mark.slow
def test_one_gib_layer_over_tls(
    behind_nginx: ProxiedFactory, skopeo: Skopeo, scratch: Path
) -> None:
    proxied = behind_nginx(scratch / "root")
    certs = proxied.pki.certs_dir
    src = scratch / "src"
    img = make_oci_image(src, "latest", layers=[GIB])
    (layer,) = img.layers
    assert layer.media_type == MT_OCI_LAYER_TAR and layer.size > GIB
    ref = f"docker://{proxied.host}/big/layer:1g"
    try:
        started = time.monotonic()
        skopeo_ok(skopeo, certs, "copy", "--preserve-digests", f"oci:{src}:latest", ref)
        pushed = time.monotonic()
        assert skopeo_ok(skopeo, certs, "inspect", "--raw", ref, binary=True) == img.manifest_bytes
        shutil.rmtree(src)  # keep peak disk use near 3 GiB

        dst = scratch / "back"
        skopeo_ok(skopeo, certs, "copy", "--preserve-digests", ref, f"dir:{dst}")
        pulled = time.monotonic()
        path = dst / layer.digest.split(":", 1)[1]
        assert path.stat().st_size == layer.size
        assert file_digest(path) == layer.digest
        assert json.loads(dir_transport_manifest(dst))["layers"][0]["digest"] == layer.digest
        peak = proxied.fastreg.peak_rss()
        print(
            f"1 GiB through nginx/TLS: push {pushed - started:.1f}s, pull {pulled - pushed:.1f}s, "
            f"fastreg peak RSS {peak / 2**20:.0f} MiB"
        )
        assert peak < MAX_SERVER_RSS, f"fastreg peak RSS {peak / 2**20:.0f} MiB"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --------------------------------------------------------------------------- Location headers


def test_locations_are_https_urls_of_the_proxy(
    behind_nginx: ProxiedFactory, tmp_path: Path
) -> None:
    proxied = behind_nginx(tmp_path / "root", relativeurls=False)
    public = f"https://{proxied.host}"
    blob = b"through the proxy"

    resp = proxied.request("POST", "/v2/loc/blobs/uploads/")
    assert resp.status == 202
    upload = resp.headers["Location"]
    assert upload.startswith(f"{public}/v2/loc/blobs/uploads/"), upload
    # the Location is followed as a client would: to nginx, over TLS
    target = urlsplit(upload)
    resp = proxied.request(
        "PUT", f"{target.path}?{target.query + '&' if target.query else ''}digest={digest_of(blob)}",
        body=blob, headers={"Content-Type": "application/octet-stream"},
    )  # fmt: skip
    assert resp.status == 201
    assert resp.headers["Location"] == f"{public}/v2/loc/blobs/{digest_of(blob)}"

    # the host the client named, whichever it was
    port = proxied.nginx.port
    resp = proxied.request("POST", "/v2/loc/blobs/uploads/", headers={"Host": f"localhost:{port}"})
    assert resp.status == 202
    assert resp.headers["Location"].startswith(f"https://localhost:{port}/v2/")

    # nginx sets the proxy headers itself: a client cannot choose where Locations point
    spoofed = {
        "Forwarded": "proto=http;host=evil.example",
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Host": "evil.example",
    }
    resp = proxied.request("POST", "/v2/loc/blobs/uploads/", headers=spoofed)
    assert resp.status == 202
    assert resp.headers["Location"].startswith(f"{public}/v2/loc/blobs/uploads/")

    # straight to fastreg, without the proxy's headers: its own plain-HTTP address
    conn = http.client.HTTPConnection("127.0.0.1", proxied.fastreg.port, timeout=30)
    try:
        conn.request("POST", "/v2/loc/blobs/uploads/")
        direct = conn.getresponse()
        direct.read()
    finally:
        conn.close()
    assert direct.status == 202
    assert direct.headers["Location"].startswith(f"{proxied.fastreg.url}/v2/loc/blobs/uploads/")


def test_locations_are_relative_with_relativeurls(
    behind_nginx: ProxiedFactory, tmp_path: Path
) -> None:
    proxied = behind_nginx(tmp_path / "root", relativeurls=True)
    blob = b"relative"
    resp = proxied.request("POST", "/v2/rel/blobs/uploads/")
    assert resp.status == 202
    upload = resp.headers["Location"]
    assert upload.startswith("/v2/rel/blobs/uploads/"), upload
    sep = "&" if "?" in upload else "?"
    resp = proxied.request("PUT", f"{upload}{sep}digest={digest_of(blob)}", body=blob)
    assert resp.status == 201
    assert resp.headers["Location"] == f"/v2/rel/blobs/{digest_of(blob)}"
