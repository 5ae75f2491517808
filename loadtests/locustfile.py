"""Locust users that behave like docker clients against any OCI registry.

One user class per suite (pick it by name on locust's command line, or with loadtests/run.py):

* ``PushUser``    builds: HEAD every blob first, mount the shared base layer from the popular
                  repository, upload the rest chunked, streamed (docker's single PATCH) or
                  monolithic, then PUT the manifest.
* ``PullUser``    pulls: popular images (most pulls, warm caches) and cold ones (a long tail).
* ``CIUser``      a pull-heavy CI mix: 90 % pulls, 10 % pushes.
* ``ReleaseUser`` a push-heavy release mix: pushes, re-pulls of what was just pushed, tag lists.

Auth needs no setting beyond credentials: an open registry, Basic (htpasswd) or Bearer tokens
(401 -> WWW-Authenticate -> token from the realm) are discovered from the registry's challenges.

    locust -f loadtests/locustfile.py --headless -u 10 -r 5 -t 1m --host http://127.0.0.1:5000 \\
        CIUser [--registry-user U --registry-password P] [--repo-prefix loadtest]

Before the users start, the popular and cold images are pushed (deterministic content, so a
second run against the same registry finds them and uploads nothing).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import uuid
from functools import cache
from typing import Any

import requests
from dockerclient import Auth, Client, Image, digest_of, locust_sender, make_image, plain_sender
from locust import HttpUser, between, events, task
from locust.runners import WorkerRunner

log = logging.getLogger("loadtests")


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("registry")
    group.add_argument("--registry-user", default="", env_var="LOCUST_REGISTRY_USER",
                       help="user for Basic auth or the token realm (default: none)")
    group.add_argument("--registry-password", default="", env_var="LOCUST_REGISTRY_PASSWORD",
                       help="its password")
    group.add_argument("--repo-prefix", default="loadtest",
                       help="repositories are created under this name (default loadtest)")
    group.add_argument("--layer-kib", type=int, default=256, help="size of a new layer (KiB)")
    group.add_argument("--chunk-kib", type=int, default=64, help="PATCH size of chunked pushes")
    group.add_argument("--popular", type=int, default=3, help="popular images (most pulls)")
    group.add_argument("--cold", type=int, default=20, help="cold images (the long tail)")


def _bytes(label: str, size: int) -> bytes:
    return hashlib.shake_256(label.encode()).digest(size)


@cache
def _catalogue(prefix: str, layer_kib: int, popular: int, cold: int) -> dict[str, Any]:
    """The seeded images: the same bytes in every process and every run."""
    base = _bytes(f"{prefix}-base", 2 * layer_kib * 1024)
    return {
        "base": base,
        "base_repo": f"{prefix}/popular-0",
        "popular": [(f"{prefix}/popular-{i}", "latest",
                     make_image([base, _bytes(f"{prefix}-popular-{i}", layer_kib * 1024)],
                                f"popular-{i}")) for i in range(popular)],
        "cold": [(f"{prefix}/cold-{i}", "v1",
                  make_image([_bytes(f"{prefix}-cold-{i}", layer_kib * 1024)], f"cold-{i}"))
                 for i in range(cold)],
    }


def catalogue(options: Any) -> dict[str, Any]:
    return _catalogue(options.repo_prefix, options.layer_kib, max(1, options.popular),
                      max(1, options.cold))


@events.test_start.add_listener
def _seed(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return  # the master seeds once
    options = environment.parsed_options
    cat = catalogue(options)
    session = requests.Session()
    session.trust_env = False  # never send loopback load through a proxy from the environment
    client = Client(environment.host, plain_sender(session),
                    Auth(options.registry_user, options.registry_password))
    try:
        client.ping()
        for repo, tag, image in cat["popular"] + cat["cold"]:
            client.push(repo, tag, image, "monolithic")
    except Exception as exc:  # noqa: BLE001 - reported as a failed request, so the run fails
        log.error("seeding the registry failed: %s", exc)
        environment.events.request.fire(request_type="SEED", name="push seed images",
                                        response_time=0, response_length=0, exception=exc,
                                        context={})


class RegistryUser(HttpUser):
    """A docker-like client. Each user first runs every task of its suite once, in the order of
    ``first_round``, then the weighted mix: a short run (the tests', a smoke run) then makes every
    kind of request its suite is about, whatever the random draw, and a long run keeps the mix."""

    abstract = True
    wait_time = between(0.0, 0.3)
    first_round: tuple[str, ...] = ()

    def on_start(self) -> None:
        o = self.environment.parsed_options
        self.client.trust_env = False
        self.registry = Client(self.host or "", locust_sender(self.client),
                               Auth(o.registry_user, o.registry_password))
        self.cat = catalogue(o)
        self.layer_size = o.layer_kib * 1024
        self.chunk = max(1, o.chunk_kib) * 1024
        self.repo = f"{o.repo_prefix}/build-{uuid.uuid4().hex[:10]}"
        self.builds = 0
        self.last: Image | None = None
        self.registry.ping()
        for name in self.first_round:
            getattr(self, name)()

    def pull_popular(self) -> None:
        repo, tag, image = random.choice(self.cat["popular"])
        self.registry.pull(repo, tag, want=image.digest)

    def pull_cold(self) -> None:
        repo, tag, image = random.choice(self.cat["cold"])
        self.registry.pull(repo, tag, want=image.digest)

    def push_build(self, mode: str) -> None:
        """A new build on the shared base: base mounted, app layer new, config new."""
        self.builds += 1
        image = make_image([self.cat["base"], os.urandom(self.layer_size)],
                           f"{self.repo}:{self.builds}")
        mounts = {digest_of(self.cat["base"]): self.cat["base_repo"]}
        self.registry.push(self.repo, f"b{self.builds}", image, mode, self.chunk, mounts)
        self.registry.put_manifest(self.repo, "latest", image)  # docker push of a second tag
        self.last = image

    def pull_latest(self) -> None:
        if self.last is None:
            self.push_build("streamed")
        assert self.last is not None
        self.registry.pull(self.repo, "latest", want=self.last.digest)


class PushUser(RegistryUser):
    first_round = ("chunked", "streamed", "monolithic")

    @task(2)
    def chunked(self) -> None:
        self.push_build("chunked")

    @task(2)
    def streamed(self) -> None:
        self.push_build("streamed")

    @task(1)
    def monolithic(self) -> None:
        self.push_build("monolithic")


class PullUser(RegistryUser):
    first_round = ("popular", "cold")

    @task(9)
    def popular(self) -> None:
        self.pull_popular()

    @task(1)
    def cold(self) -> None:
        self.pull_cold()


class CIUser(RegistryUser):
    """90 % pulls (mostly popular base images), 10 % pushes of a build."""

    # what the tests assert, the push first: a short run on a loaded machine may end inside on_start
    first_round = ("push", "popular", "cold")

    @task(8)
    def popular(self) -> None:
        self.pull_popular()

    @task(1)
    def cold(self) -> None:
        self.pull_cold()

    @task(1)
    def push(self) -> None:
        self.push_build("streamed")


class ReleaseUser(RegistryUser):
    """Mostly pushes (70 %), then checks of what was released: pull it back, list the tags."""

    # what the tests assert first: a short run on a loaded machine may end inside on_start
    first_round = ("monolithic", "tags", "verify", "chunked", "streamed")

    @task(3)
    def chunked(self) -> None:
        self.push_build("chunked")

    @task(3)
    def monolithic(self) -> None:
        self.push_build("monolithic")

    @task(1)
    def streamed(self) -> None:
        self.push_build("streamed")

    @task(2)
    def verify(self) -> None:
        self.pull_latest()

    @task(1)
    def tags(self) -> None:
        if self.builds == 0:
            self.push_build("monolithic")
        self.registry.tags(self.repo, must_have=f"b{self.builds}")
