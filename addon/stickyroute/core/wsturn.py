"""Which client frames of a Responses WebSocket are turns of the conversation, and which count.

The handshake was routed like any request and counted as one request of its session; that
count stands for the connection's first real turn. A prewarm frame (`"generate": false`, which
Codex sends first on every connection) asks for no output: it is never a turn and is never
counted, whatever comes before or after it. Every real turn after the first counts once, as a
hit on the pin the handshake chose.

Pure: no mitmproxy, no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple


class FrameTurn(NamedTuple):
    prewarm: bool  # warms the provider's state and cache; no output, not a turn
    counts: bool  # a new request of the session (the handshake already counted the first turn)
    turns: int  # real turns on the connection so far, this frame included


def frame_turn(request: Mapping[str, object], turns_before: int) -> FrameTurn:
    """How one `response.create` frame's request fields count, given the connection's past."""
    if turns_before < 0:
        raise ValueError(f"turns_before must be >= 0, got {turns_before}")
    if request.get("generate") is False:
        return FrameTurn(prewarm=True, counts=False, turns=turns_before)
    return FrameTurn(prewarm=False, counts=turns_before > 0, turns=turns_before + 1)
