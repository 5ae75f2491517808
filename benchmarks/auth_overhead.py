"""What token auth costs: manifest GET requests/s with a valid bearer token vs without auth.

Starts two fastreg processes on one filesystem root (one without `auth`, one with `auth.token`
and a generated signing key), pushes one image through the first, then runs Debian's `wrk`
against `GET /v2/bench/app/manifests/latest` on each, alternating, at --connections concurrent
clients, and prints each round, the medians and the ratio. The token is the same for every
request (what a pulling client does), so this measures the per-request path: the token cache
hit, the route match and the access check. Figures are printed, never asserted.

    apt-get install -y wrk
    python benchmarks/auth_overhead.py [--rounds 5] [--seconds 5] [--connections 64]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from fastreg.auth.keys import libtrust_key_id

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SERVICE, ISSUER = "bench-registry", "bench-issuer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signing_key(work: Path) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    bundle = work / "bundle.pem"
    bundle.write_bytes(cert.public_bytes(Encoding.PEM))
    return key, bundle


def config(root: Path, port: int, auth: str) -> str:
    return (f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n{auth}")


def start(work: Path, name: str, text: str, port: int) -> subprocess.Popen[bytes]:
    cfg = work / f"{name}.yml"
    cfg.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with open(work / f"{name}.log", "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen([sys.executable, "-m", "fastreg", "serve", str(cfg)], env=env,
                                stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/v2/")
            if conn.getresponse().status in (200, 401):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{name} did not start: {(work / f'{name}.log').read_text()}")


def push_image(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def blob(data: bytes) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        conn.request("POST", f"/v2/bench/app/blobs/uploads/?digest={digest}", body=data)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 201, resp.status
        return {"digest": digest, "size": len(data)}

    cfg = {**blob(b'{"architecture":"amd64","os":"linux"}'),
           "mediaType": "application/vnd.oci.image.config.v1+json"}
    layer = {**blob(os.urandom(4096)), "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
                           "layers": [layer]}).encode()
    conn.request("PUT", "/v2/bench/app/manifests/latest", body=manifest,
                 headers={"Content-Type": OCI_MANIFEST})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 201, resp.status


def wrk(port: int, seconds: int, connections: int, headers: list[str]) -> float:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-H", f"Accept: {OCI_MANIFEST}"]
    for header in headers:
        argv += ["-H", header]
    argv.append(f"http://127.0.0.1:{port}/v2/bench/app/manifests/latest")
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{non2xx.group(1)} failed requests:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk)")
    work = Path(tempfile.mkdtemp(prefix="fastreg-auth-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        key, bundle = signing_key(work)
        plain_port, auth_port = free_port(), free_port()
        auth = (f"auth:\n  token:\n    realm: http://127.0.0.1/token\n    service: {SERVICE}\n"
                f"    issuer: {ISSUER}\n    rootcertbundle: {bundle}\n")
        procs.append(start(work, "plain", config(work / "root", plain_port, ""), plain_port))
        procs.append(start(work, "token", config(work / "root", auth_port, auth), auth_port))
        push_image(plain_port)
        now = int(time.time())
        token = jwt.encode(
            {"iss": ISSUER, "aud": SERVICE, "sub": "bench", "iat": now, "nbf": now,
             "exp": now + 3600, "access": [{"type": "repository", "name": "bench/app",
                                            "actions": ["pull"]}]},
            key, algorithm="ES256", headers={"kid": libtrust_key_id(key.public_key())})
        bearer = [f"Authorization: Bearer {token}"]
        wrk(plain_port, 1, args.connections, [])  # warm up both
        wrk(auth_port, 1, args.connections, bearer)
        plain, authed = [], []
        for i in range(args.rounds):
            plain.append(wrk(plain_port, args.seconds, args.connections, []))
            authed.append(wrk(auth_port, args.seconds, args.connections, bearer))
            print(f"round {i + 1}: no auth {plain[-1]:9.1f} req/s   token {authed[-1]:9.1f} req/s",
                  flush=True)
        p, a = statistics.median(plain), statistics.median(authed)
        paired = statistics.median(x / y for x, y in zip(authed, plain, strict=True))
        print(f"median:  no auth {p:9.1f} req/s   token {a:9.1f} req/s   "
              f"token/no-auth = {a / p:.3f} ({(1 - a / p) * 100:+.1f}% slower); "
              f"median of per-round ratios {paired:.3f}", flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
