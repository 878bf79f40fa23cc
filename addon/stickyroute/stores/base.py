"""The store interface: where pins and the state that goes with them outlive one process.

The in-memory tables (PinTable, the chain map, account health, the ledger) stay the first-level
cache every request reads; a store only keeps them (file) or shares them (redis). So a store
must never block a request: `changed()` only notes what changed, and the one awaited call on
the hot path, `claim()`, answers within a short timeout or gives up (None).

Other state joins a store through `Section`: an object with export_state/import_state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from stickyroute.core.pins import Pin, PinTable
from stickyroute.log import get_logger

logger = get_logger(__name__)


@runtime_checkable
class Section(Protocol):
    """State saved next to the pins (chains, health, counters): JSON-able both ways."""

    def export_state(self) -> Any: ...
    def import_state(self, data: Any, now: float) -> None: ...


@dataclass
class Local:
    """What a store saves and fills: this proxy's in-memory state."""

    pins: PinTable
    sections: dict[str, Section] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)  # configured accounts (shared counts)


class Store(Protocol):
    shared: bool  # other proxies write too: new pins are claimed, not just written

    def open(self, local: Local, now: float) -> None:
        """Load what can be loaded now and say so in the log. Never raises."""
        ...

    async def close(self, local: Local, now: float) -> None:
        """Final save / flush at shutdown."""
        ...

    async def tick(self, local: Local, now: float) -> None:
        """Periodic work: snapshot, flush batched writes, reconnect and re-sync."""
        ...

    async def claim(self, pin: Pin) -> tuple[Pin, bool] | None:
        """First writer wins: (the winning pin, True if ours was new); None: no answer in time."""
        ...

    def changed(self, pin: Pin | None, how: str) -> None:
        """Note an event (new | moved | hit | removed | unpinned); cheap, never blocks."""
        ...

    def shared_sessions(self) -> Mapping[str, int] | None:
        """Live sessions per alias across all proxies (None: only local counts are known)."""
        ...

    def save_chain(self, key: str, session: str, alias: str, ttl: float) -> None:
        """Note one chain link (key: "<provider>/<client>/<id>", as in the chain map)."""
        ...

    async def load_chain(self, key: str) -> tuple[str, str] | None:
        """(session, alias) another proxy learned for this chain key; None: unknown/no answer."""
        ...

    def save_health(self, alias: str, state: Mapping[str, Any]) -> None: ...
    async def load_health(self) -> dict[str, dict[str, Any]]: ...


class MemoryStore:
    """Keeps nothing: state lives and dies with the process."""

    shared = False

    def open(self, local: Local, now: float) -> None:
        logger.info("store: memory (pins are lost on restart)")

    async def close(self, local: Local, now: float) -> None:
        return None

    async def tick(self, local: Local, now: float) -> None:
        return None

    async def claim(self, pin: Pin) -> tuple[Pin, bool] | None:
        return pin, True

    def changed(self, pin: Pin | None, how: str) -> None:
        return None

    def shared_sessions(self) -> Mapping[str, int] | None:
        return None

    def save_chain(self, key: str, session: str, alias: str, ttl: float) -> None:
        return None

    async def load_chain(self, key: str) -> tuple[str, str] | None:
        return None

    def save_health(self, alias: str, state: Mapping[str, Any]) -> None:
        return None

    async def load_health(self) -> dict[str, dict[str, Any]]:
        return {}
