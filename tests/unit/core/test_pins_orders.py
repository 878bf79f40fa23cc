"""The pin table's two orders (creation in its dict, use in a list through the pins) behave as
a plain model of what expires when, whatever the sequence of operations."""

from hypothesis import given, settings
from hypothesis import strategies as st

from stickyroute.core.pins import Pin, PinTable

IDLE, MAX_AGE, SIZE = 10.0, 25.0, 4


class Model:
    """What the table must answer, computed the slow, obvious way."""

    def __init__(self) -> None:
        self.pins: dict[str, dict[str, float | int | str]] = {}
        self.seq = 0  # use order

    def live(self, s: str, now: float) -> bool:
        p = self.pins.get(s)
        return p is not None and now - p["used"] < IDLE and now - p["created"] < MAX_AGE

    def put(self, s: str, alias: str, now: float) -> None:
        old = self.pins.pop(s, None)
        moves = int(old["moves"]) + (old["alias"] != alias) if old else 0
        self.seq += 1
        self.pins[s] = {"alias": alias, "created": now, "used": now, "moves": moves,
                        "seq": self.seq}
        while len(self.pins) > SIZE:
            lru = min(self.pins, key=lambda k: self.pins[k]["seq"])
            del self.pins[lru]

    def touch(self, s: str, now: float) -> None:
        self.seq += 1
        self.pins[s].update(used=now, seq=self.seq)

    def expire(self, now: float) -> set[str]:
        gone = {s for s in self.pins if not self.live(s, now)}
        for s in gone:
            del self.pins[s]
        return gone


ops = st.lists(st.tuples(st.sampled_from(["put", "get", "touch", "expire", "remove"]),
                         st.sampled_from(["s1", "s2", "s3", "s4", "s5", "s6"]),
                         st.sampled_from(["a", "b"]), st.floats(0, 8)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_the_table_answers_as_the_model(steps: list[tuple[str, str, str, float]]) -> None:
    table, model, now = PinTable(idle_timeout=IDLE, max_age=MAX_AGE, max_size=SIZE), Model(), 0.0
    for op, s, alias, dt in steps:
        now += dt
        if op == "put":
            table.put(s, alias, now)
            model.put(s, alias, now)
        elif op in ("get", "touch"):
            pin = table.get(s, now)
            assert (pin is not None) == model.live(s, now)
            if pin is None:
                model.pins.pop(s, None)  # expired on read
            elif op == "touch":
                table.touch(pin, now)
                model.touch(s, now)
        elif op == "expire":
            assert {p.session for p in table.expire(now)} == model.expire(now)
        else:
            table.remove(s)
            model.pins.pop(s, None)
        by_use = sorted(model.pins, key=lambda k: model.pins[k]["seq"])
        assert [p.session for p in table] == by_use
        assert {p.session: (p.alias, p.moves) for p in table} == {
            k: (v["alias"], v["moves"]) for k, v in model.pins.items()}
        counts: dict[str, int] = {}
        for v in model.pins.values():
            counts[str(v["alias"])] = counts.get(str(v["alias"]), 0) + 1
        assert table.sessions_per_alias() == counts


def test_a_dropped_pin_touched_later_leaves_the_table_alone() -> None:
    table = PinTable()
    old, _ = table.put("s", "a", 0)
    table.put("s", "b", 1)  # re-pinned: `old` is out of the table
    table.put("t", "a", 2)
    table.touch(old, 3)
    assert [p.session for p in table] == ["s", "t"] and len(table) == 2


def test_restore_keeps_use_order_by_last_use_and_expiry_by_creation() -> None:
    table = PinTable(idle_timeout=100, max_age=50)
    saved = [Pin("late-born", "a", created=30.0, last_used=40.0),
             Pin("early-born", "a", created=10.0, last_used=45.0)]
    saved[0].count_moves(2)
    assert table.restore_all(saved, 45.0) == 2
    assert [p.session for p in table] == ["late-born", "early-born"]  # least recently used first
    assert [p.session for p in table.expire(61.0)] == ["early-born"]  # too old first
    assert table.get("late-born", 61.0) is not None and table.get("late-born", 61.0).moves == 2
