"""Where the S3 client's credentials come from: the configured keys, the environment's, or
botocore's chain (profiles, web identity, container and instance roles), asked on every request
so that temporary credentials are renewed as botocore renews them."""

from __future__ import annotations

import os
from typing import Any

from fastreg.storage.s3.params import S3Params
from fastreg.storage.s3.signing import Credentials


class CredentialChain:
    """Static keys, the environment's, or botocore's chain (imported only when needed)."""

    def __init__(self, params: S3Params) -> None:
        self._static: Credentials | None = None
        self._provider: Any = None
        if params.accesskey and params.secretkey:
            self._static = Credentials(params.accesskey, params.secretkey, params.sessiontoken)
        elif os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
            self._static = Credentials(
                os.environ["AWS_ACCESS_KEY_ID"],
                os.environ["AWS_SECRET_ACCESS_KEY"],
                os.environ.get("AWS_SESSION_TOKEN") or None,
            )

    async def get(self) -> Credentials | None:
        if self._static is not None:
            return self._static
        if self._provider is None:
            from aiobotocore.session import get_session  # only for roles: keep it unloaded

            self._provider = await get_session().get_credentials() or False
        if not self._provider:
            return None  # anonymous: a public bucket
        frozen = await self._provider.get_frozen_credentials()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)
