"""The file store (default): one machine, pins survive a restart.

Loads the state file at start, snapshots it when something changed (periodically and at
shutdown). A write is atomic (temp file in the same directory, fsync, rename, fsync of the
directory) and private (mode 0600). A file we cannot read is moved aside with a warning and
the proxy starts empty: it never refuses to start or crashes over its own state file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from stickyroute.core.pins import Pin
from stickyroute.log import get_logger

from . import snapshot
from .base import Local

logger = get_logger(__name__)

SNAPSHOT_INTERVAL = 5.0  # seconds between snapshots while something changes


class FileStore:
    shared = False

    def __init__(self, path: str) -> None:
        self.path = path
        self._changes = 0
        self._saved_changes = 0
        self._lock = asyncio.Lock()
        self._failing = False
        self._last_save = float("-inf")

    # ---- start ---------------------------------------------------------------------------
    def open(self, local: Local, now: float) -> None:
        self._last_save = now
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            logger.info("store: file %s (new)", self.path)
            return
        except OSError as e:
            logger.warning("store: cannot read %s (%s); starting empty",
                           self.path, e.strerror or e)
            return
        try:
            pins, sections, skipped = snapshot.decode(data)
        except snapshot.StateFileError as e:
            aside = self._move_aside()
            logger.warning("store: %s is unusable (%s); %s; starting with no pins",
                           self.path, e, f"moved it to {aside}" if aside else "left it in place")
            return
        live = local.pins.restore_all(pins, now)
        for name, section in local.sections.items():
            if name in sections:
                try:
                    section.import_state(sections[name], now)
                except Exception as e:  # one bad section must not cost the pins
                    logger.warning("store: ignoring saved %s: %s", name, e)
        logger.info("store: file %s: restored %d pins (%d expired, %d unreadable "
                    "dropped)", self.path, live, len(pins) - live, skipped)

    def _move_aside(self) -> str | None:
        aside = f"{self.path}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            os.replace(self.path, aside)
        except OSError as e:
            logger.warning("store: cannot move %s aside: %s", self.path, e)
            return None
        return aside

    # ---- saving --------------------------------------------------------------------------
    def changed(self, pin: Pin | None, how: str) -> None:
        self._changes += 1

    async def tick(self, local: Local, now: float) -> None:
        if self._changes != self._saved_changes and now - self._last_save >= SNAPSHOT_INTERVAL:
            await self.save(local, now)

    async def close(self, local: Local, now: float) -> None:
        await self.save(local, now)

    async def save(self, local: Local, now: float) -> bool:
        """Snapshot the state; yields to the event loop between slices of pins."""
        async with self._lock:
            mark = self._changes
            sections = {}
            for name, section in local.sections.items():
                try:
                    sections[name] = section.export_state()
                except Exception as e:
                    logger.warning("store: cannot save %s: %s", name, e)
            parts = []
            for text in snapshot.encode(local.pins, sections, now):
                parts.append(text.encode())
                await asyncio.sleep(0)  # a large table is encoded between requests
            try:
                await asyncio.to_thread(write_atomic, self.path, parts)
            except OSError as e:
                if not self._failing:
                    logger.warning("store: cannot write %s: %s (pins stay in "
                                   "memory; retrying)", self.path, e)
                self._failing = True
                return False
            if self._failing:
                logger.info("store: writing %s works again", self.path)
            self._failing = False
            self._saved_changes = mark
            self._last_save = now
            return True

    # ---- not shared: the rest is local ---------------------------------------------------
    async def claim(self, pin: Pin) -> tuple[Pin, bool] | None:
        return pin, True

    def shared_sessions(self) -> Mapping[str, int] | None:
        return None

    def save_chain(self, key: str, session: str, alias: str, ttl: float) -> None:
        self._changes += 1  # the chain map itself is saved as a section

    async def load_chain(self, key: str) -> tuple[str, str] | None:
        return None

    def save_health(self, alias: str, state: Mapping[str, Any]) -> None:
        self._changes += 1

    async def load_health(self) -> dict[str, dict[str, Any]]:
        return {}


def write_atomic(path: str, data: bytes | list[bytes]) -> None:
    """Replace `path` with `data` so a crash leaves the old file or the new one, never half."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".stickyroute-state.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp made it 0600
            f.writelines([data] if isinstance(data, bytes) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # not every platform lets a directory be fsynced
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
