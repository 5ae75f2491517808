"""Upload grants: who opened an upload, kept next to it on storage (any worker can read it).

What lets a bearer token that expired during a long push finish the upload its subject opened
(`auth.token.uploadgrace`). Access control says who the caller is and until when its token
would be admitted; the rule (same repository, same subject, deadline not passed) and the
storage path are the registry's: auth never reads or writes storage itself.
"""

from __future__ import annotations

import orjson

from fastreg.registry import layout
from fastreg.registry.errors import RegistryError
from fastreg.registry.names import is_valid_name
from fastreg.registry.uploads import check_upload_id
from fastreg.storage.base import StorageDriver, StorageError

MAX_GRANT = 4096


class GrantNotStored(Exception):
    """The grant could not be written: the upload goes on, without grace."""


class UploadGrants:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def record(self, name: str, upload_id: str, subject: str, deadline: float) -> None:
        """Remember that ``subject`` opened the upload, and until when it may go on."""
        grant = {"repository": name, "subject": subject, "deadline": deadline}
        try:
            await self.driver.put_content(
                layout.upload_authgrant(name, upload_id), orjson.dumps(grant)
            )
        except StorageError as exc:
            raise GrantNotStored(str(exc)) from exc

    async def admits(
        self, name: str, upload_id: str, subject: str, own_deadline: float, now: float
    ) -> bool:
        """True when ``subject`` opened this upload of ``name`` and neither the grant's deadline
        nor ``own_deadline`` (what the caller's own credential would allow) has passed."""
        if not is_valid_name(name):
            return False
        try:
            check_upload_id(upload_id)
            raw = await self.driver.get_content(
                layout.upload_authgrant(name, upload_id), limit=MAX_GRANT
            )
            grant = orjson.loads(raw)
        except (RegistryError, StorageError, orjson.JSONDecodeError):
            return False
        if not isinstance(grant, dict) or grant.get("repository") != name:
            return False
        if grant.get("subject") != subject:
            return False
        deadline = grant.get("deadline")
        if not isinstance(deadline, (int, float)):
            return False
        return now <= max(deadline, own_deadline)
