"""Upload purging: abandoned sessions go, recent ones and those without `startedat` stay."""

from __future__ import annotations

import time

import pytest

from fastreg.config import ConfigError
from fastreg.registry import layout, purge
from fastreg.registry.purge import PurgeSettings, purge_uploads
from fastreg.storage.base import PathNotFound
from tests.api.conftest import Client, driver_of
from tests.api.helpers import open_upload


async def test_purge_removes_only_old_sessions(client: Client) -> None:
    driver = driver_of(client)
    old = (await open_upload(client, "app")).rstrip("/").split("/")[-1].split("?")[0]
    new = (await open_upload(client, "app")).rstrip("/").split("/")[-1].split("?")[0]
    await driver.put_content(layout.upload_startedat("app", old), b"2020-01-01T00:00:00Z")
    undated = "3f2a6c1e-0000-4000-8000-00000000beef"
    await driver.put_content(layout.upload_data("app", undated), b"partial")

    dry = await purge_uploads(driver, time.time() - 3600, dry_run=True)
    assert dry == [layout.upload_dir("app", old)]
    await driver.stat(layout.upload_data("app", old))

    assert await purge_uploads(driver, time.time() - 3600, dry_run=False) == dry
    with pytest.raises(PathNotFound):
        await driver.stat(layout.upload_data("app", old))
    await driver.stat(layout.upload_data("app", new))
    await driver.stat(layout.upload_data("app", undated))
    assert (await client.get(f"/v2/app/blobs/uploads/{new}")).status == 204
    assert (await client.get(f"/v2/app/blobs/uploads/{old}")).status == 404


def test_settings_follow_distribution_defaults() -> None:
    assert purge.parse(None, readonly=False) == PurgeSettings(True, 168 * 3600, 24 * 3600, False)
    assert not purge.parse(None, readonly=True).enabled
    s = purge.parse({"enabled": True, "age": "1h", "interval": "10m", "dryrun": True}, False)
    assert (s.age, s.interval, s.dryrun) == (3600, 600, True)
    with pytest.raises(ConfigError, match="uploadpurging.age"):
        purge.parse({"age": "soon"}, False)
