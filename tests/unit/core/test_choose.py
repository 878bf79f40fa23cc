from collections import Counter
from dataclasses import dataclass

import pytest

from stickyroute.core.choose import Chooser, decide
from stickyroute.core.errors import NoAccount
from stickyroute.core.identify import SessionId


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
    ch = Chooser()
    d1 = decide(ch, "openai", sid("s"), None, [A, B], {})
    assert d1.affinity == "new"
    d2 = decide(ch, "openai", sid("s"), d1.account.alias, [A, B], {})
    assert d2.affinity == "hit" and d1.account == d2.account
    assert decide(ch, "openai", None, None, [A, B], {}).affinity == "unpinned"


def test_decide_moves_soft_pin_or_fails():
    ch = Chooser("fill-first")
    with pytest.raises(NoAccount, match="pinned to account 'a'.*sticky_fallback=fail"):
        decide(ch, "openai", sid("s"), "a", [B], {}, fallback="fail")
    d = decide(ch, "openai", sid("s"), "a", [B], {}, fallback="rotate")
    assert d.affinity == "moved" and d.moved_from == "a" and d.account == B


def test_decide_hard_pin_never_moves():
    with pytest.raises(NoAccount, match="cannot move") as e:
        decide(Chooser("fill-first"), "openai", sid("s", hard=True), "a", [B], {})
    assert e.value.status == 503


def test_decide_without_candidates():
    with pytest.raises(NoAccount) as e:
        decide(Chooser(), "anthropic", sid("s"), None, [], {})
    assert b'"type": "error"' in e.value.body()


def test_decide_prefers_new_candidates_for_new_sessions_only():
    ch = Chooser("fill-first")
    assert decide(ch, "openai", sid("s"), None, [A, B], {}, new_candidates=[B]).account == B
    assert decide(ch, "openai", sid("s"), "a", [A, B], {}, new_candidates=[B]).account == A
