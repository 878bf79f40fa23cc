"""stores/file.py: the state file: round trip, private and atomic, corrupt files moved aside,
saved when changed and not too often, big tables without stalling the event loop."""

import asyncio
import json
import logging
import os
import stat
import time

import pytest

from stickyroute.core.ledger import Ledger
from stickyroute.core.pins import Pin, PinTable
from stickyroute.stores import snapshot
from stickyroute.stores.base import Local
from stickyroute.stores.file import FileStore, write_atomic
from stickyroute.stores.snapshot import LedgerSection


def local_state(max_size=100_000):
    ledger = Ledger()
    return Local(PinTable(idle_timeout=3600, max_age=86400, max_size=max_size),
                 {"counters": LedgerSection(ledger)}), ledger


def save(store, local, now):
    return asyncio.run(store.save(local, now))


def test_round_trip_keeps_pins_times_counters_and_drops_expired(tmp_path):
    path = str(tmp_path / "state.json")
    local, ledger = local_state()
    for i in range(5):
        pin, _ = local.pins.put(f"openai/s{i}", "oa" if i % 2 else "ob", now=1000.0 + i)
        local.pins.touch(pin, 1000.0 + i)
    local.pins.get("openai/s3", 1003.0).tokens_in = 77
    ledger["oa"].count_request("hit")
    ledger["oa"].tokens_cached = 5
    assert save(FileStore(path), local, 1010.0)

    again, ledger2 = local_state()
    # s0 was last used at 1000: at 4600.5 it is idle past 3600 s, the rest are not
    FileStore(path).open(again, now=4600.5)
    assert [p.session for p in again.pins] == ["openai/s1", "openai/s2", "openai/s3", "openai/s4"]
    s3 = again.pins.get("openai/s3", 4600.5)
    assert (s3.alias, s3.created, s3.last_used, s3.tokens_in, s3.requests) == ("oa", 1003.0, 1003.0, 77, 1)
    assert again.pins.sessions_per_alias() == {"oa": 2, "ob": 2}
    assert ledger2["oa"].requests == 1 and ledger2["oa"].affinity == {"hit": 1}
    assert ledger2["oa"].tokens_cached == 5 and ledger2["oa"].inflight == 0
    assert [p.session for p in again.pins.expire(4601.5)] == ["openai/s1"]


def test_file_is_private_and_written_atomically(tmp_path):
    path = tmp_path / "sub" / "state.json"
    local, _ = local_state()
    local.pins.put("k", "oa", 1.0)
    assert save(FileStore(str(path)), local, 2.0)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(path.parent) == ["state.json"]  # no temp file left behind
    doc = json.loads(path.read_text())
    assert doc["format"] == "stickyroute-state" and doc["version"] == 1
    assert doc["pins"] == [["k", "oa", 1.0, 1.0, 0, 0, 0, 0, 0, 0]]


def valid_bytes():
    return "".join(snapshot.encode([Pin("k", "oa", 1.0, 1.0)], {}, 2.0)).encode()


@pytest.mark.parametrize("content, reason", [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"\x00\xff garbage \x13", "not valid JSON"),
    (valid_bytes()[:-9], "not valid JSON"),  # truncated mid-write by something else
    (b'{"format": "stickyroute-state", "version": 99, "pins": []}', "version 99"),
    (b'{"some": "other tool"}', "not a stickyroute state file"),
    (b'[1, 2, 3]', "not a stickyroute state file"),
    (b'{"format": "stickyroute-state", "version": 1, "pins": {}}', "malformed"),
])
def test_unusable_file_is_moved_aside_and_start_is_empty(tmp_path, caplog, content, reason):
    path = tmp_path / "state.json"
    path.write_bytes(content)
    local, _ = local_state()
    with caplog.at_level(logging.WARNING, "stickyroute"):
        FileStore(str(path)).open(local, now=10.0)
    assert len(local.pins) == 0
    assert not path.exists()
    aside = [p for p in os.listdir(tmp_path) if p.startswith("state.json.corrupt-")]
    assert len(aside) == 1 and (tmp_path / aside[0]).read_bytes() == content
    assert reason in caplog.text and "moved it to" in caplog.text
    # and the next snapshot writes a good file in its place
    local.pins.put("k", "oa", 10.0)
    assert save(FileStore(str(path)), local, 11.0)
    again, _ = local_state()
    FileStore(str(path)).open(again, now=12.0)
    assert "k" in again.pins


def test_bad_rows_are_skipped_not_fatal(tmp_path, caplog):
    path = tmp_path / "state.json"
    doc = json.loads(valid_bytes())
    doc["pins"] += [["x"], "nope", ["y", "oa", "soon", 1, 0, 0, 0, 0, 0, 0]]
    path.write_text(json.dumps(doc))
    local, _ = local_state()
    with caplog.at_level(logging.INFO, "stickyroute"):
        FileStore(str(path)).open(local, now=3.0)
    assert [p.session for p in local.pins] == ["k"]
    assert "3 unreadable" in caplog.text


def test_unwritable_place_logs_once_and_keeps_running(tmp_path, caplog):
    target = tmp_path / "dir-in-the-way"
    target.mkdir()
    (target / "x").write_text("keep me")  # os.replace onto a non-empty directory fails
    store = FileStore(str(target))
    local, _ = local_state()
    local.pins.put("k", "oa", 1.0)
    with caplog.at_level(logging.WARNING, "stickyroute"):
        assert not save(store, local, 2.0)
        assert not save(store, local, 3.0)
    assert caplog.text.count("cannot write") == 1
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_tick_saves_only_when_changed_and_not_too_often(tmp_path):
    path = tmp_path / "state.json"
    store = FileStore(str(path))
    local, _ = local_state()
    store.open(local, now=100.0)

    async def run():
        await store.tick(local, 200.0)
        assert not path.exists()  # nothing changed
        pin, _ = local.pins.put("k", "oa", 200.0)
        store.changed(pin, "new")
        await store.tick(local, 201.0)
        assert path.exists()
        store.changed(pin, "hit")
        path.unlink()
        await store.tick(local, 202.0)  # changed, but the last snapshot was 1 s ago
        assert not path.exists()
        await store.tick(local, 206.5)
        assert path.exists()
    asyncio.run(run())


def test_big_table_snapshot_yields_to_the_event_loop(tmp_path):
    """100k pins: the snapshot is cut into slices, so other tasks run while it is made."""
    local, _ = local_state()
    for i in range(100_000):
        local.pins.put(f"openai/session-{i:06d}-0123456789abcdef", f"acct-{i % 7}", 1000.0 + i / 100)
    store = FileStore(str(tmp_path / "state.json"))
    gaps: list[float] = []

    async def ticker(stop):
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async def run():
        stop = asyncio.Event()
        t = asyncio.ensure_future(ticker(stop))
        started = time.perf_counter()
        assert await store.save(local, 2100.0)
        total = time.perf_counter() - started
        stop.set()
        await t
        return total

    total = asyncio.run(run())
    print(f"\n100k pins: snapshot {total * 1000:.0f} ms, {len(gaps)} loop turns meanwhile, "
          f"longest stall {max(gaps) * 1000:.1f} ms, file {os.path.getsize(store.path) // 1024} KiB")
    assert len(gaps) >= 2 * 100_000 // snapshot.CHUNK  # the loop kept turning
    again, _ = local_state()
    started = time.perf_counter()
    FileStore(store.path).open(again, now=2100.0)
    print(f"100k pins: load {(time.perf_counter() - started) * 1000:.0f} ms")
    assert len(again.pins) == 100_000


def test_restore_keeps_most_recent_when_over_the_size_bound(tmp_path):
    local, _ = local_state()
    for i in range(10):
        local.pins.put(f"s{i}", "oa", 100.0 + i)
    path = str(tmp_path / "state.json")
    assert save(FileStore(path), local, 200.0)
    small, _ = local_state(max_size=3)
    FileStore(path).open(small, now=200.0)
    assert [p.session for p in small.pins] == ["s7", "s8", "s9"]


def test_write_atomic_replaces_whole_file(tmp_path):
    path = str(tmp_path / "f")
    write_atomic(path, b"one")
    write_atomic(path, b"two")
    assert open(path, "rb").read() == b"two"
