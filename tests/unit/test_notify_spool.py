"""The on-disk notification spool: records survive reopening, a torn or corrupt tail is ignored,
the cursor moves only on commit, the bound rejects, segments rotate and go, slots lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fastreg.config import ConfigError
from fastreg.notify.config import default_spool_directory, parse_notifications
from fastreg.notify.spool import Slot, Spool, encode, other_slots


def spool(path: Path, maxbytes: int = 1 << 20) -> Spool:
    s = Spool(str(path), maxbytes)
    s.open()
    return s


def read_all(s: Spool) -> list[bytes]:
    out: list[bytes] = []
    while True:
        records, pos = s.read(1000, 1 << 20)
        if not records:
            return out
        out += records
        s.commit(pos, len(records))


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("*.seg"))


def test_records_survive_reopen_and_cursor_moves_only_on_commit(tmp_path: Path) -> None:
    s = spool(tmp_path)
    assert s.append([b"one", b"two", b"three"]) == [True, True, True]
    records, pos = s.read(2, 1 << 20)
    assert records == [b"one", b"two"]
    s.commit(pos, 2)
    records, _ = s.read(10, 1 << 20)
    assert records == [b"three"]  # read but never committed
    s.close()
    again = spool(tmp_path)
    assert again.pending_records == 1
    assert again.pending_bytes == len(encode(b"three"))
    assert again.append([b"four"]) == [True]
    assert read_all(again) == [b"three", b"four"]
    assert again.pending_records == 0 and again.pending_bytes == 0


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_a_torn_or_corrupt_tail_is_ignored(tmp_path: Path, damage: str) -> None:
    s = spool(tmp_path)
    s.append([b"a" * 100, b"b" * 100])
    s.close()
    (seg,) = segments(tmp_path)
    data = seg.read_bytes()
    if damage == "truncate":  # kill -9 in the middle of a write
        seg.write_bytes(data[:-30])
    elif damage == "garbage":
        seg.write_bytes(data + b"\xe7\x00\x00\x00\x10partial")
    else:
        seg.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    again = spool(tmp_path)
    expected = [b"a" * 100] if damage != "garbage" else [b"a" * 100, b"b" * 100]
    assert again.pending_records == len(expected)
    again.append([b"after"])  # goes to a new segment, never behind the damaged tail
    assert read_all(again) == [*expected, b"after"]
    assert len(segments(tmp_path)) <= 1


def test_a_broken_cursor_replays_rather_than_loses(tmp_path: Path) -> None:
    s = spool(tmp_path)
    s.append([b"x", b"y"])
    _, pos = s.read(1, 1 << 20)
    s.commit(pos, 1)
    s.close()
    (tmp_path / "cursor").write_bytes(b"\x00" * 5)  # torn cursor: start over (at least once)
    assert read_all(spool(tmp_path)) == [b"x", b"y"]


def test_bound_rejects_and_delivery_frees_room(tmp_path: Path) -> None:
    record = len(encode(b"z" * 1000))
    s = spool(tmp_path, maxbytes=record * 3)
    assert s.append([b"z" * 1000] * 5) == [True, True, True, False, False]
    assert s.pending_bytes == record * 3
    _, pos = s.read(2, 1 << 20)
    s.commit(pos, 2)
    assert s.append([b"z" * 1000] * 3) == [True, True, False]


def test_segments_rotate_and_delivered_ones_are_deleted(tmp_path: Path) -> None:
    s = spool(tmp_path, maxbytes=16 * 1024)  # segments of 4 KiB
    payloads = [os.urandom(500) for _ in range(24)]
    for p in payloads:
        assert s.append([p]) == [True]
    assert len(segments(tmp_path)) >= 3
    assert read_all(s) == payloads
    s.append([b"tail"])
    assert read_all(s) == [b"tail"]
    assert len(segments(tmp_path)) <= 2
    s.close()
    assert spool(tmp_path, maxbytes=16 * 1024).pending_records == 0


def test_slots_are_exclusive_and_freed_with_their_holder(tmp_path: Path) -> None:
    first = Slot.acquire(str(tmp_path))
    second = Slot.acquire(str(tmp_path))
    assert first.path.endswith("worker-0") and second.path.endswith("worker-1")
    assert Slot.try_lock(first.path) is None
    assert other_slots(str(tmp_path), first.path) == [second.path]
    first.release()
    again = Slot.acquire(str(tmp_path))
    assert again.path == first.path  # a restarted worker takes its predecessor's slot
    again.release()
    second.release()


def test_config_defaults_and_errors(tmp_path: Path) -> None:
    assert default_spool_directory("filesystem", {"rootdirectory": "/data"}, "/srv") == (
        "/data/fastreg-notify-spool")
    assert default_spool_directory("s3", {}, "/srv") == "/srv/var/notify-spool"
    settings = parse_notifications({"endpoints": [
        {"name": "a", "url": "http://127.0.0.1:1/", "timeout": "0s", "threshold": 0,
         "ignoredmediatypes": ["x"], "ignore": {"mediatypes": ["y"], "actions": ["pull"]}},
    ]}, "inmemory", {}, str(tmp_path))
    (endpoint,) = settings.endpoints
    assert (endpoint.timeout, endpoint.threshold, endpoint.backoff) == (1.0, 10, 1.0)
    assert endpoint.ignored_mediatypes == {"x", "y"}
    assert endpoint.ignored_actions == {"pull"}
    assert settings.spool.directory == str(tmp_path / "var" / "notify-spool")
    bad = [
        ({"endpoints": [{"name": "a", "url": "ftp://x"}]}, "endpoints[0].url"),
        ({"endpoints": [{"url": "http://x"}]}, "endpoints[0].name"),
        ({"endpoints": [{"name": "a", "url": "http://x", "ignore": {"actions": ["pul"]}}]},
         "ignore.actions"),
        ({"endpoints": [{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}]},
         "duplicate"),
        ({"spool": {"maxbytes": "lots"}}, "spool.maxbytes"),
    ]
    for raw, message in bad:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_notifications(raw, "inmemory", {}, str(tmp_path))


def test_spool_keys_are_known_and_the_example_config_loads() -> None:
    from fastreg.config import load_config, parse_config

    text = (
        "version: 0.1\nstorage: inmemory\nnotifications:\n  spool:\n"
        "    directory: /srv/spool\n    maxbytes: 100000\n"
    )
    assert parse_config(text, {}).warnings == ()
    env = {"REGISTRY_NOTIFICATIONS_SPOOL_MAXBYTES": "5"}
    with pytest.raises(ConfigError, match="spool.maxbytes"):
        parse_config(text, env)  # every section is parsed at load
    example = Path(__file__).resolve().parents[2] / "deploy/examples/notifications.yml"
    config = load_config(example, {})
    assert config.warnings == ()
    assert config.notifications.endpoints
