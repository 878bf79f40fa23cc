"""The state file's format (version 1): encoded in chunks, decoded strictly.

One JSON object. Pins are rows of plain values in `pin_fields` order (a 100k-pin table is a
few MB, not tens), written last so the encoder can stream them in slices without holding the
event loop. Anything that is not exactly this format is rejected with StateFileError: the
caller moves the file aside rather than guessing. Never holds a credential: pins name accounts
by alias only.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from stickyroute.core.ledger import AccountStats, Ledger
from stickyroute.core.pins import Pin

FORMAT = "stickyroute-state"
VERSION = 1
PIN_FIELDS = ("session", "alias", "created", "last_used", "requests", "tokens_in",
              "tokens_out", "tokens_cached", "cost_micros", "moves")
CHUNK = 500  # pins per encoded slice (a few ms of encoding each)


class StateFileError(ValueError):
    """The file is not a stickyroute state file we can read (corrupt, foreign, other version)."""


def pin_row(pin: Pin) -> list[Any]:
    return [pin.session, pin.alias, pin.created, pin.last_used, pin.requests, pin.tokens_in,
            pin.tokens_out, pin.tokens_cached, pin.cost_micros, pin.moves]


def encode(pins: Iterable[Pin], sections: Mapping[str, Any], saved: float) -> Iterator[str]:
    """The whole file's text in slices of CHUNK pins, built as the caller iterates (a slice's
    rows live only while it is encoded: no long-lived garbage for the collector)."""
    yield _head(sections, saved)
    rows = iter(pins)
    first = True
    while chunk := [pin_row(p) for p in itertools.islice(rows, CHUNK)]:
        yield ("" if first else ",") + "\n" + json.dumps(chunk, separators=(",", ":"))[1:-1]
        first = False
    yield TAIL


def _head(sections: Mapping[str, Any], saved: float) -> str:
    doc = {"format": FORMAT, "version": VERSION, "saved": saved, "pin_fields": PIN_FIELDS,
           "sections": dict(sections)}
    return json.dumps(doc, separators=(",", ":"))[:-1] + ',"pins":['


TAIL = "\n]}\n"


def decode(data: bytes) -> tuple[list[Pin], dict[str, Any], int]:
    """(pins, sections, rows skipped) from a file's bytes; StateFileError if it is not ours."""
    if not data.strip():
        raise StateFileError("the file is empty")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise StateFileError(f"not valid JSON (truncated or corrupt?): {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StateFileError("not a stickyroute state file")
    if doc.get("version") != VERSION:
        raise StateFileError(f"format version {doc.get('version')!r}, this proxy reads "
                             f"version {VERSION}")
    fields, rows, sections = doc.get("pin_fields"), doc.get("pins"), doc.get("sections", {})
    if not isinstance(fields, list) or not isinstance(rows, list) or not isinstance(
            sections, dict) or any(f not in fields for f in PIN_FIELDS):
        raise StateFileError("pin table missing or malformed")
    index: list[int] | None = [fields.index(f) for f in PIN_FIELDS]
    if index == list(range(len(PIN_FIELDS))):
        index = None  # our own order: no reshuffle per row
    pins, skipped = [], 0
    for row in rows:
        pin = _pin(row, index, len(fields))
        if pin is None:
            skipped += 1
        else:
            pins.append(pin)
    return pins, sections, skipped


def _pin(row: Any, index: list[int] | None, width: int) -> Pin | None:
    if type(row) is not list or len(row) != width:
        return None
    if index is not None:
        row = [row[i] for i in index]
    session, alias, created, last_used, requests, t_in, t_out, t_cached, cost, moves = row[:10]
    if type(session) is not str or type(alias) is not str:
        return None
    try:
        pin = Pin(session, alias, float(created), float(last_used), int(requests), int(t_in),
                  int(t_out), int(t_cached), int(cost))
        pin.count_moves(int(moves))
    except (TypeError, ValueError, OverflowError):
        return None
    return pin


SAVED_COUNTERS = tuple(f.name for f in dataclasses.fields(AccountStats) if f.name != "inflight")


class LedgerSection:
    """The per-account counters as a saved section (gauges such as in-flight are not saved)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def export_state(self) -> Any:
        return {alias: {name: getattr(stats, name) for name in SAVED_COUNTERS}
                for alias, stats in self.ledger.accounts.items()}

    def import_state(self, data: Any, now: float) -> None:
        if not isinstance(data, dict):
            return
        known = set(SAVED_COUNTERS)
        for alias, saved in data.items():
            if not isinstance(saved, dict):
                continue
            stats = self.ledger[alias]
            for name, value in saved.items():
                if name in known and isinstance(value, type(getattr(stats, name))):
                    setattr(stats, name, value)
