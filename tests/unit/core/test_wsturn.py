"""Which WebSocket frames are turns: prewarm frames never count, the handshake covers turn one."""

import pytest

from stickyroute.core.wsturn import FrameTurn, frame_turn

PREWARM = {"model": "gpt-5.1-codex", "input": [], "generate": False}
TURN = {"model": "gpt-5.1-codex", "input": [{"role": "user", "content": "hi"}]}


def replay(frames: list[dict[str, object]]) -> list[FrameTurn]:
    out, turns = [], 0
    for frame in frames:
        result = frame_turn(frame, turns)
        turns = result.turns
        out.append(result)
    return out


def test_codex_connection_prewarm_then_turns() -> None:
    prewarm, first, second = replay([PREWARM, TURN, TURN])
    assert prewarm == FrameTurn(prewarm=True, counts=False, turns=0)
    assert first == FrameTurn(prewarm=False, counts=False, turns=1)  # the handshake counted it
    assert second == FrameTurn(prewarm=False, counts=True, turns=2)


def test_a_prewarm_between_turns_is_still_not_a_turn() -> None:
    assert [(r.prewarm, r.counts, r.turns) for r in replay([TURN, PREWARM, TURN, PREWARM])] == [
        (False, False, 1), (True, False, 1), (False, True, 2), (True, False, 2)]


@pytest.mark.parametrize("generate, prewarm", [
    (False, True), (True, False), (None, False), (0, False), ("false", False)])
def test_only_a_literal_false_is_a_prewarm(generate: object, prewarm: bool) -> None:
    assert frame_turn({**TURN, "generate": generate}, 3).prewarm is prewarm


def test_negative_history_is_refused() -> None:
    with pytest.raises(ValueError, match="turns_before must be >= 0"):
        frame_turn(TURN, -1)
