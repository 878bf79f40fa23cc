"""Chain affinity (part of step 2, identify): response ids and reasoning item ids -> the session
and account whose server-side state they name.

A request that continues from one of these ids can only be served by that account, whatever
else it carries. Every entry lives `ttl` seconds from when it was learned; entries are kept in
that order, so expiry pops from the front and costs what expired; a size bound drops the oldest.
Keys are namespaced by provider and client like session keys: clients never share a chain.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from .identify import SessionId

MAX_INPUT_LOOKUPS = 64  # input reasoning items checked per request, newest first


class Link(NamedTuple):
    session: str  # the session key the id belongs to
    alias: str  # the account that holds its state
    learned: float
    source: str  # "previous_response_id" | "reasoning"


class ChainMap:
    def __init__(self, ttl: float = 86400, max_size: int = 400_000) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._links: OrderedDict[str, Link] = OrderedDict()

    def __len__(self) -> int:
        return len(self._links)

    def learn(self, namespace: str, ids: Iterable[str], session: str, alias: str,
              now: float) -> None:
        """Remember that these ids (of one response) belong to session/alias."""
        for id_ in ids:
            key = f"{namespace}/{id_}"
            self._links.pop(key, None)  # re-learning refreshes its place in expiry order
            self._links[key] = Link(session, alias, now, "previous_response_id")
        while len(self._links) > self.max_size:
            self._links.popitem(last=False)

    def get(self, namespace: str, id_: str, now: float) -> Link | None:
        key = f"{namespace}/{id_}"
        link = self._links.get(key)
        if link is not None and now - link.learned >= self.ttl:
            del self._links[key]
            return None
        return link

    def find(self, namespace: str, body: Mapping[str, Any], now: float) -> Link | None:
        """The link a request body continues from: previous_response_id, else its newest known
        input reasoning item."""
        prev = body.get("previous_response_id")
        if isinstance(prev, str) and prev:
            link = self.get(namespace, prev, now)
            if link is not None:
                return link
        items = body.get("input")
        if not isinstance(items, list):
            return None
        checked = 0
        for item in reversed(items):
            if not isinstance(item, dict) or item.get("type") != "reasoning":
                continue
            rid = item.get("id")
            if isinstance(rid, str) and rid:
                link = self.get(namespace, rid, now)
                if link is not None:
                    return link._replace(source="reasoning")
            checked += 1
            if checked >= MAX_INPUT_LOOKUPS:
                break
        return None

    def expire(self, now: float) -> int:
        """Drop expired links from the front; returns how many went."""
        n = 0
        while self._links:
            link = next(iter(self._links.values()))
            if now - link.learned < self.ttl:
                break
            self._links.popitem(last=False)
            n += 1
        return n

    def export_state(self) -> list[list[Any]]:
        """Links in expiry order, as JSON-able rows (a store section)."""
        return [[key, *link] for key, link in self._links.items()]

    def import_state(self, data: Any, now: float) -> None:
        """Load rows saved by export_state, skipping expired and malformed ones."""
        if not isinstance(data, list):
            return
        for row in data:
            if not (isinstance(row, list) and len(row) == 5
                    and all(isinstance(v, str) for v in (row[0], row[1], row[2], row[4]))
                    and isinstance(row[3], int | float)):
                continue
            key, session, alias, learned, source = row
            if now - learned < self.ttl and key not in self._links:
                self._links[key] = Link(session, alias, float(learned), source)
        while len(self._links) > self.max_size:
            self._links.popitem(last=False)

    def remove_alias(self, alias: str) -> int:
        """Forget every link to one account (operator eviction; costs the table size)."""
        gone = [k for k, link in self._links.items() if link.alias == alias]
        for k in gone:
            del self._links[k]
        return len(gone)


def continue_session(session: SessionId | None, link: Link) -> SessionId:
    """The identity of a request that continues a known chain: the chain's session, pinned HARD.

    The state decides: when the other identity steps named a different session, the chain
    still wins, because only the chain's account can read the state the request carries.
    """
    if session is not None and session.key == link.session:
        return session._replace(hard=True)
    return SessionId(link.session, f"chain:{link.source}", hard=True)


MAX_ID = 256  # longer ids are not looked up in a shared store (real ones are ~50 characters)


def unknown_previous(chains: ChainMap, namespace: str, body: Mapping[str, Any],
                     now: float) -> str | None:
    """The previous_response_id this proxy knows nothing of (a shared store may know it)."""
    prev = body.get("previous_response_id")
    if not isinstance(prev, str) or not prev or len(prev) > MAX_ID:
        return None
    return prev if chains.get(namespace, prev, now) is None else None
