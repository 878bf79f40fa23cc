from collections import Counter
from dataclasses import dataclass

import pytest

from stickyroute.core.choose import Chooser, decide
from stickyroute.core.errors import NoAccount
from stickyroute.core.identify import SessionId
from stickyroute.core.pins import PinTable


@dataclass(frozen=True)
class Acc:
    alias: str
    weight: int = 1


A, B, C = Acc("a"), Acc("b"), Acc("c")


def test_least_sessions_spreads_and_respects_weight():
    ch = Chooser("least-sessions")
    assert ch.choose([A, B], {"a": 3, "b": 1}).alias == "b"
    assert ch.choose([Acc("a", 4), B], {"a": 3, "b": 1}).alias == "a"
    seen = Counter()
    counts: dict[str, int] = {}
    for _ in range(9):
        pick = ch.choose([A, B, C], counts).alias
        counts[pick] = counts.get(pick, 0) + 1
        seen[pick] += 1
    assert set(seen.values()) == {3}


def test_round_robin_fill_first_random_weighted():
    rr = Chooser("round-robin")
    assert [rr.choose([A, B, C], {}).alias for _ in range(4)] == ["a", "b", "c", "a"]
    assert Chooser("fill-first").choose([A, B], {"a": 100}).alias == "a"
    vals = iter([0.0, 0.99])
    assert [Chooser("random", rng=lambda: next(vals)).choose([A, B], {}).alias
            for _ in range(2)] == ["a", "b"]
    w = Chooser("weighted", rng=lambda: 0.5)
    assert w.choose([A, Acc("b", 3)], {}).alias == "b"  # 0.5*4=2 falls in b's share
    assert Chooser("least-inflight").choose([A, B], {}, {"a": 2, "b": 0}).alias == "b"


def test_unknown_strategy():
    with pytest.raises(ValueError, match="unknown strategy 'best'"):
        Chooser("best")


def test_empty_candidates():
    assert Chooser().choose([], {}) is None


def sid(v: str, hard: bool = False) -> SessionId:
    return SessionId(f"openai/anon/{v}", "test", hard)


def test_decide_new_hit_unpinned():
    t, ch = PinTable(), Chooser()
    d1 = decide(t, ch, "openai", [A, B], sid("s"), 0)
    d2 = decide(t, ch, "openai", [A, B], sid("s"), 1)
    assert d1.affinity == "new" and d2.affinity == "hit" and d1.account == d2.account
    assert decide(t, ch, "openai", [A, B], None, 1).affinity == "unpinned"
    assert len(t) == 1


def test_decide_moves_soft_pin_or_fails():
    t, ch = PinTable(), Chooser("fill-first")
    decide(t, ch, "openai", [A, B], sid("s"), 0)
    with pytest.raises(NoAccount, match="pinned to account 'a'.*sticky_fallback=fail"):
        decide(t, ch, "openai", [B], sid("s"), 1, fallback="fail")
    d = decide(t, ch, "openai", [B], sid("s"), 2, fallback="rotate")
    assert d.affinity == "moved" and d.moved_from == "a" and d.account == B
    assert t.get(sid("s").key, 2).alias == "b"


def test_decide_hard_pin_never_moves():
    t, ch = PinTable(), Chooser("fill-first")
    decide(t, ch, "openai", [A, B], sid("s"), 0)
    with pytest.raises(NoAccount, match="cannot move") as e:
        decide(t, ch, "openai", [B], sid("s", hard=True), 1)
    assert e.value.status == 503


def test_decide_without_candidates():
    with pytest.raises(NoAccount) as e:
        decide(PinTable(), Chooser(), "anthropic", [], sid("s"), 0)
    assert b'"type": "error"' in e.value.body()
