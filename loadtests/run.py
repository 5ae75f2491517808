"""Run one locust suite headless for a bounded time; write locust's CSV and HTML report.

Without ``--host`` it starts a fastreg of its own (filesystem root in a temp dir, 127.0.0.1,
``--auth token`` adds fastreg's token server and token auth); with ``--host`` it drives any
registry. Exits non-zero when a request failed, none was made, or locust itself failed.

    python loadtests/run.py                                  # the CI mix, 30 s, 10 users
    python loadtests/run.py --suite push --run-time 2m --users 20
    python loadtests/run.py --suite pull --host http://registry.local:5000 \\
        --registry-user ci --registry-password secret
    python loadtests/run.py --suite ci -- --repo-prefix perf/ci    # extra locust arguments

Suites: push, pull, ci (90 % pulls / 10 % pushes), release (push-heavy), token (the CI mix with
Bearer tokens: here a fastreg with its embedded token server and one user; with --host, any
token-auth registry, given --registry-user/--registry-password for its realm).
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
SUITES = {"push": "PushUser", "pull": "PullUser", "ci": "CIUser", "release": "ReleaseUser",
          "token": "CIUser"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="loadtests/run.py", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--suite", choices=sorted(SUITES), default="ci")
    p.add_argument("--host", default="", help="registry to drive (default: start a fastreg)")
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--spawn-rate", type=float, default=5)
    p.add_argument("--run-time", default="30s", help="locust --run-time (30s, 2m, ...)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "loadtests" / "out",
                   help="where the CSV files and the HTML report go")
    p.add_argument("--workers", type=int, default=1, help="fastreg --workers, when started here")
    p.add_argument("--registry-user", default=os.environ.get("LOCUST_REGISTRY_USER", ""))
    p.add_argument("--registry-password", default=os.environ.get("LOCUST_REGISTRY_PASSWORD", ""))
    p.add_argument("locust_args", nargs="*", help="after --: passed to locust as they are")
    return p.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with opener.open(url, timeout=2):
                return
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


@contextmanager
def process(argv: list[str], log: Path, url: str) -> Iterator[None]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_ready(url, proc, log)
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def token_auth(work: Path, port: int, user: str, password: str) -> str:
    """config.yml lines for token auth by fastreg's embedded token server, with one user."""
    import bcrypt
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    key = ec.generate_private_key(ec.SECP256R1())
    (work / "token.key").write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    (work / "htpasswd").write_text(f"{user}:{hashed}\n")
    (work / "acl.yml").write_text(
        f"rules:\n  - users: [{user}]\n    repositories: [\"**\"]\n    actions: [\"*\"]\n"
        "    catalog: true\n")
    return (
        "auth:\n  token:\n"
        f"    realm: http://127.0.0.1:{port}/token\n"
        "    service: fastreg-loadtest\n    issuer: fastreg-loadtest\n"
        "    tokenserver:\n"
        f"      key: {work / 'token.key'}\n      htpasswd: {work / 'htpasswd'}\n"
        f"      acl: {work / 'acl.yml'}\n      embedded: true\n"
    )


@contextmanager
def local_fastreg(args: argparse.Namespace, work: Path) -> Iterator[str]:
    port = free_port()
    root = work / "root"
    root.mkdir()
    auth = ""
    if args.suite == "token":
        # the users must find the challenge, fetch tokens and keep going: give them an account
        args.registry_user = args.registry_user or "loadtest"
        args.registry_password = args.registry_password or secrets.token_urlsafe(12)
        auth = token_auth(work, port, args.registry_user, args.registry_password)
    cfg = work / "config.yml"
    cfg.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n"
        f"  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth}")
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "fastreg", "serve", "--workers", str(args.workers), str(cfg)]
    with process(argv, work / "fastreg.log", url + "/v2/"):
        yield url


def summary(csv_prefix: Path) -> tuple[int, int, list[str]]:
    """(requests, failures, failure lines) from locust's CSV files."""
    requests = failures = 0
    with open(f"{csv_prefix}_stats.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["Name"] == "Aggregated":
                requests, failures = int(row["Request Count"]), int(row["Failure Count"])
    lines = []
    path = Path(f"{csv_prefix}_failures.csv")
    if path.exists():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                lines.append(f"{row['Occurrences']} x {row['Method']} {row['Name']}: "
                             f"{row['Error']}")
    return requests, failures, lines


def run_locust(args: argparse.Namespace, host: str) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    prefix = args.out / args.suite
    argv = [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless",
            "--users", str(args.users), "--spawn-rate", str(args.spawn_rate),
            "--run-time", args.run_time, "--stop-timeout", "10", "--host", host,
            "--csv", str(prefix), "--html", f"{prefix}.html", "--only-summary",
            "--loglevel", "WARNING", *args.locust_args, SUITES[args.suite]]
    env = dict(os.environ)
    env["LOCUST_REGISTRY_USER"] = args.registry_user
    env["LOCUST_REGISTRY_PASSWORD"] = args.registry_password
    print(f"loadtest: suite {args.suite} ({SUITES[args.suite]}) against {host}, "
          f"{args.users} users for {args.run_time}", flush=True)
    rc = subprocess.run(argv, env=env, check=False).returncode
    requests, failures, lines = summary(prefix)
    print(f"loadtest: {requests} requests, {failures} failed; "
          f"CSV {prefix}_stats.csv, report {prefix}.html", flush=True)
    for line in lines:
        print(f"  {line}")
    if rc != 0 or failures or not requests:
        return rc or 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.host:
        return run_locust(args, args.host)
    work = Path(tempfile.mkdtemp(prefix="fastreg-loadtest-"))
    try:
        with local_fastreg(args, work) as url:
            return run_locust(args, url)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
