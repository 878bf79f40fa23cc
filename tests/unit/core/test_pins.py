"""core/pins.py: the pin table — get, touch, LRU bound, idle and max-age expiry, restore."""

from stickyroute.core.pins import Pin, PinTable


def test_put_get_touch_counts():
    t = PinTable()
    pin, evicted = t.put("s1", "a", 0)
    assert evicted == [] and t.get("s1", 1) is pin
    t.touch(pin, 5)
    assert pin.requests == 1 and pin.last_used == 5
    t.put("s2", "a", 1)
    t.put("s3", "b", 1)
    assert t.sessions_per_alias() == {"a": 2, "b": 1}
    t.put("s1", "b", 2)  # re-pin
    assert t.sessions_per_alias() == {"a": 1, "b": 2}
    assert t.get("s1", 2).moves == 1


def test_idle_timeout_expires_on_read():
    t = PinTable(idle_timeout=10)
    t.put("s", "a", 0)
    assert t.get("s", 9.9) is not None
    assert t.get("s", 10) is None and len(t) == 0 and t.sessions_per_alias() == {}


def test_touch_keeps_a_pin_alive_until_max_age():
    t = PinTable(idle_timeout=10, max_age=25)
    pin, _ = t.put("s", "a", 0)
    for now in (8, 16, 24):
        assert t.get("s", now) is pin
        t.touch(pin, now)
    assert t.get("s", 25) is None


def test_lru_bound_evicts_least_recently_used():
    t = PinTable(max_size=2)
    p1, _ = t.put("s1", "a", 0)
    t.put("s2", "a", 1)
    t.touch(p1, 2)
    _, evicted = t.put("s3", "a", 3)
    assert [p.session for p in evicted] == ["s2"]
    assert "s1" in t and "s3" in t


def test_sweep_removes_idle_and_old_and_stops_at_first_live():
    t = PinTable(idle_timeout=10, max_age=100)
    for i in range(5):
        t.put(f"s{i}", "a", i)
    gone = t.expire(12.5)  # s0..s2 idle since <= 2.5
    assert sorted(p.session for p in gone) == ["s0", "s1", "s2"]
    assert len(t) == 2 and t.sessions_per_alias() == {"a": 2}


def test_sweep_max_age_even_when_in_use():
    t = PinTable(idle_timeout=50, max_age=30)
    pin, _ = t.put("old", "a", 0)
    t.put("young", "a", 20)
    t.touch(pin, 29)
    assert [p.session for p in t.expire(31)] == ["old"]


def test_sweep_cost_is_what_expired():
    t = PinTable(idle_timeout=10, max_age=1000)
    for i in range(10_000):
        t.put(f"s{i}", "a", 100)
    t.put("early", "a", 0)
    t.remove("early")
    # nothing expired: the sweep looks at the front only
    assert t.expire(105) == []
    assert len(t) == 10_000


def test_stale_birth_entries_are_skipped():
    t = PinTable(idle_timeout=100, max_age=10)
    t.put("s", "a", 0)
    t.put("s", "b", 5)  # re-pinned: the first birth entry is stale
    assert t.expire(11) == []
    assert [p.alias for p in t.expire(15)] == ["b"]


def test_remove_alias():
    t = PinTable()
    t.put("s1", "a", 0)
    t.put("s2", "b", 0)
    assert [p.session for p in t.remove_alias("a")] == ["s1"]
    assert t.sessions_per_alias() == {"b": 1}


def test_expire_in_slices_removes_the_same_pins():
    whole, sliced = PinTable(idle_timeout=10, max_age=50), PinTable(idle_timeout=10, max_age=50)
    for t in (whole, sliced):
        for i in range(25):
            t.put(f"s{i}", "a", i)
        t.put("s3", "b", 30)  # leaves a stale birth entry behind
    expected = [p.session for p in whole.expire(60)]
    got: list[str] = []
    while sliced.expire_pending(60):
        batch = sliced.expire(60, limit=4)
        assert len(batch) <= 4
        got += [p.session for p in batch]
    assert sorted(got) == sorted(expected) and len(sliced) == len(whole) == 0


def test_expire_pending_looks_at_both_orders():
    t = PinTable(idle_timeout=10, max_age=30)
    pin, _ = t.put("s", "a", 0)
    assert not t.expire_pending(5)
    assert t.expire_pending(10)  # idle
    t.touch(pin, 25)
    assert not t.expire_pending(29) and t.expire_pending(30)  # too old though in use
    assert t.expire(30, limit=0) == [] and len(t) == 1


def test_restored_pins_keep_max_age_order_for_the_sweep():
    table = PinTable(idle_timeout=10**9, max_age=100)
    saved = [Pin("late-born", "oa", created=50.0, last_used=60.0),
             Pin("early-born", "oa", created=10.0, last_used=90.0)]
    assert table.restore_all(saved, now=95.0) == 2
    assert [p.session for p in table] == ["late-born", "early-born"]  # use order
    assert [p.session for p in table.expire(111.0)] == ["early-born"]  # birth order
    assert [p.session for p in table.expire(151.0)] == ["late-born"]
