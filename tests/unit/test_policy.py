"""The registry's policy (registry/policy.py) and upload grants (registry/grants.py), without HTTP:
what the handlers and access control ask, answered by the domain."""

from __future__ import annotations

import pytest

from fastreg.registry import layout
from fastreg.registry.errors import ErrorCode, RegistryError
from fastreg.registry.grants import GrantNotStored, UploadGrants
from fastreg.registry.policy import Policy, RegistrySettings
from fastreg.storage.base import StorageError
from fastreg.storage.inmemory import InMemoryDriver

UPLOAD = "0123abcd-0123-4567-89ab-0123456789ab"


class Pulls:
    def __init__(self, *allowed: str) -> None:
        self.allowed = set(allowed)

    def may_pull(self, repository: str) -> bool:
        return repository in self.allowed


def test_read_only_and_disabled_deletes_are_unsupported() -> None:
    with pytest.raises(RegistryError) as err:
        Policy(RegistrySettings(readonly=True)).check_writable()
    assert err.value.code is ErrorCode.UNSUPPORTED
    assert err.value.message == "the registry is in read-only mode"
    with pytest.raises(RegistryError) as err:
        Policy(RegistrySettings(delete_enabled=False)).check_delete()
    assert err.value.message == "deletes are disabled"
    Policy(RegistrySettings(delete_enabled=True)).check_delete()
    Policy(RegistrySettings()).check_writable()


def test_mount_rule() -> None:
    open_registry = Policy(RegistrySettings(automount=True))
    guarded = Policy(RegistrySettings(automount=False))
    assert open_registry.may_mount("src", None)  # no access control: anyone may pull
    assert not open_registry.may_mount("Bad Name", None)  # a malformed `from`: a normal upload
    assert guarded.may_mount("src", Pulls("src"))
    assert not guarded.may_mount("src", Pulls("other"))  # no pull on `from`: a normal upload
    assert open_registry.may_mount(None, None)  # automatic content discovery
    assert not guarded.may_mount(None, Pulls("src"))
    assert not guarded.may_mount("", Pulls(""))  # an empty `from` is no source


async def test_grant_admits_its_subject_until_the_later_deadline() -> None:
    grants = UploadGrants(InMemoryDriver())
    await grants.record("repo", UPLOAD, "alice", deadline=100.0)
    assert await grants.admits("repo", UPLOAD, "alice", own_deadline=50.0, now=99.0)
    assert await grants.admits("repo", UPLOAD, "alice", own_deadline=150.0, now=120.0)
    assert not await grants.admits("repo", UPLOAD, "alice", own_deadline=50.0, now=101.0)
    assert not await grants.admits("repo", UPLOAD, "bob", own_deadline=150.0, now=1.0)
    assert not await grants.admits("other", UPLOAD, "alice", own_deadline=150.0, now=1.0)
    assert not await grants.admits("repo", "not-an-id", "alice", own_deadline=150.0, now=1.0)
    assert not await grants.admits("Bad Name", UPLOAD, "alice", own_deadline=150.0, now=1.0)


async def test_a_malformed_grant_admits_nobody() -> None:
    driver = InMemoryDriver()
    grants = UploadGrants(driver)
    for raw in (b"not json", b"[]", b'{"repository": "repo", "subject": "alice"}',
                b'{"repository": "repo", "subject": "alice", "deadline": "soon"}'):
        await driver.put_content(layout.upload_authgrant("repo", UPLOAD), raw)
        assert not await grants.admits("repo", UPLOAD, "alice", own_deadline=1e12, now=1.0)


async def test_a_grant_that_cannot_be_stored_says_so() -> None:
    class Failing(InMemoryDriver):
        async def put_content(self, path: str, data: bytes) -> None:
            raise StorageError("disk full")

    with pytest.raises(GrantNotStored, match="disk full"):
        await UploadGrants(Failing()).record("repo", UPLOAD, "alice", 1.0)
