"""core/health.py: the account health transition table, cooldowns, the ramp, export/import and
merging another proxy's changes."""

from stickyroute.core import health as hm
from stickyroute.core.health import TABLE, Event, Health, State
from stickyroute.core.outcome import Kind, Outcome

NOW = 1_700_000_000.0
RL = Outcome(Kind.RATE_LIMITED, "rate limited (429)", NOW + 20)
RL_NO_RESET = Outcome(Kind.RATE_LIMITED, "rate limited (429)")
QUOTA = Outcome(Kind.QUOTA, "quota exhausted (429 insufficient_quota)")
REVOKED = Outcome(Kind.REVOKED, "credential rejected (401)")
OVER = Outcome(Kind.OVERLOADED, "upstream error (529)")
CONN = Outcome(Kind.CONNECTION, "connection error")
OK = Outcome(Kind.OK)


def test_every_table_entry_is_reachable_and_lands_where_it_says():
    """Drive each (state, event) pair of TABLE from a fresh account and check the target."""
    outcomes = {Event.OK: OK, Event.RATE_LIMITED: RL, Event.QUOTA: QUOTA,
                Event.REVOKED: REVOKED, Event.OVERLOADED: OVER, Event.CONNECTION: CONN}
    put_in = {State.HEALTHY: lambda h, t: None,
              State.COOLING: lambda h, t: h.record("a", OVER, t),
              State.DISABLED: lambda h, t: h.disable("a", "by hand", t)}
    for (state, event), (target, _) in TABLE.items():
        h = Health(rng=lambda: 0.0)
        put_in[state](h, NOW)
        assert h.describe("a", NOW).state == state
        t = NOW
        if event in outcomes:
            h.record("a", outcomes[event], t)
        elif event is Event.EXPIRE:
            t = NOW + 10_000  # lazily applied on read
        elif event is Event.DISABLE:
            h.disable("a", "by hand", t)
        elif event is Event.ENABLE:
            h.enable("a", t)
        elif event is Event.CHANGED:
            h.changed("a", t)
        assert h.describe("a", t).state == target, (state, event)


def test_pairs_not_in_the_table_change_nothing():
    h = Health()
    h.record("a", REVOKED, NOW)
    for o in (OK, RL, QUOTA, OVER, CONN):
        h.record("a", o, NOW + 1)
    assert h.describe("a", NOW + 1)._asdict() == {"state": "disabled",
                                         "reason": "credential rejected (401)", "until": None}
    assert (State.HEALTHY, Event.ENABLE) not in TABLE
    h2 = Health()
    h2.changed("b", NOW)
    h2.enable("b", NOW)
    assert h2.available("b", NOW)


def test_rate_limit_cools_until_reset_then_recovers():
    h = Health()
    assert h.record("a", RL, NOW) == (State.HEALTHY, State.COOLING)
    assert h.describe("a", NOW)._asdict() == {"state": "cooling", "reason": "rate limited (429)",
                                    "until": NOW + 20}
    assert not h.available("a", NOW + 19.9)
    assert h.retry_after(["a", "b"], NOW + 5) == 15
    assert h.available("a", NOW + 20)
    assert h.describe("a", NOW + 20)._asdict() == {"state": "healthy", "reason": None, "until": None}


def test_cooling_keeps_the_later_end_and_ignores_late_successes():
    h = Health()
    h.record("a", RL, NOW)
    h.record("a", Outcome(Kind.RATE_LIMITED, "again", NOW + 5), NOW + 1)
    assert h.describe("a", NOW + 1).until == NOW + 20
    h.record("a", OK, NOW + 2)  # a request sent before the 429 finished late
    assert h.describe("a", NOW + 2).state == "cooling"


def test_backoff_doubles_and_resets_on_success():
    h = Health()
    ends = []
    t = NOW
    for _ in range(4):
        h.record("a", OVER, t)
        until = h.describe("a", t).until
        ends.append(until - t)
        t = until  # recovered exactly then; the next failure backs off longer
    assert ends == [2, 4, 8, 16]
    h.record("a", OK, t)
    h.record("a", CONN, t)
    assert h.describe("a", t).until == t + 2
    for _ in range(20):
        h.record("a", OVER, t)
    assert h.describe("a", t).until <= t + hm.BACKOFF_MAX


def test_rate_limit_without_reset_uses_backoff_and_quota_a_long_default():
    h = Health()
    h.record("a", RL_NO_RESET, NOW)
    assert h.describe("a", NOW).until == NOW + hm.BACKOFF_BASE
    h.record("b", QUOTA, NOW)
    assert h.describe("b", NOW).until == NOW + hm.QUOTA_DEFAULT
    h.record("c", Outcome(Kind.RATE_LIMITED, "r", NOW - 5), NOW)  # a reset in the past
    assert h.describe("c", NOW).until == NOW + hm.MIN_COOLDOWN


def test_revoked_stays_disabled_until_enabled_or_changed():
    h = Health()
    h.record("a", REVOKED, NOW)
    assert not h.available("a", NOW + 10**6)
    h.changed("a", NOW + 1)
    assert h.available("a", NOW + 1)
    h.disable("a", "operator: rotating key", NOW + 2)
    assert h.describe("a", NOW + 2).reason == "operator: rotating key"
    h.enable("a", NOW + 3)
    assert h.available("a", NOW + 3)


def test_neutral_outcomes_leave_health_alone():
    h = Health()
    h.record("a", OVER, NOW)
    h.record("a", Outcome(Kind.NEUTRAL, "400"), NOW)
    assert h.describe("a", NOW).until == NOW + 2


def test_recovered_account_takes_new_sessions_gradually():
    rolls = iter([0.5, 0.5, 0.5])
    h = Health(rng=lambda: next(rolls))
    h.record("a", Outcome(Kind.RATE_LIMITED, "r", NOW + 10), NOW)
    assert not h.takes_new("a", NOW + 5)
    back = NOW + 10
    assert h.available("a", back)  # pinned sessions come back at once
    assert not h.takes_new("a", back + hm.RAMP * 0.25)  # 0.5 >= 0.25
    assert h.takes_new("a", back + hm.RAMP * 0.75)  # 0.5 < 0.75
    assert h.takes_new("a", back + hm.RAMP)  # ramp over: no roll needed
    assert h.takes_new("never-seen", NOW)


def test_forget_drops_removed_accounts():
    h = Health()
    h.record("a", REVOKED, NOW)
    h.record("b", REVOKED, NOW)
    h.forget(["b"])
    assert h.available("a", NOW) and not h.available("b", NOW)


def test_state_survives_a_restart_through_export_and_import():
    h = Health()
    h.record("a", RL, NOW)
    h.record("b", REVOKED, NOW)
    h.record("c", OK, NOW)
    h.record("d", Outcome(Kind.RATE_LIMITED, "r", NOW + 1), NOW)
    data = h.export_state()
    assert set(data) == {"a", "b", "d"}
    fresh = Health()
    fresh.import_state({**data, "junk": {"state": "??"}, "bad": 3}, NOW + 5)
    assert fresh.describe("a", NOW + 5) == h.describe("a", NOW + 5)
    assert fresh.describe("b", NOW + 5).state == "disabled"
    assert fresh.available("d", NOW + 5) and fresh.available("junk", NOW + 5)
    fresh.import_state("not a dict", NOW)


def test_merge_rules():
    h = Health()
    now = 1000.0
    assert not h.merge("oa", {"state": "cooling", "until": 990.0}, now)  # over already
    assert h.merge("oa", {"state": "cooling", "until": 1050.0, "reason": "429"}, now)
    assert not h.merge("oa", {"state": "cooling", "until": 1040.0}, now)  # ours ends later
    assert not h.merge("oa", {"state": "healthy", "event": "expire"}, now)  # each sees expiry
    assert h.describe("oa", now).state == State.COOLING.value
    assert h.merge("oa", {"state": "healthy", "event": Event.ENABLE.value}, now)
    assert h.available("oa", now)
    assert h.merge("oa", {"state": "disabled", "reason": "operator"}, now)
    assert not h.merge("oa", {"state": "cooling", "until": 2000.0}, now)  # disabled wins
    assert not h.merge("oa", {"state": "bogus"}, now) and not h.merge("oa", None, now)
    changes = []
    h.on_change = lambda alias, event, t: changes.append((alias, event))
    h.merge("ob", {"state": "disabled"}, now)
    assert changes == []  # a merged change is not sent back out
    h.record("ob", Outcome(Kind.OK, "ok"), now)
    h.enable("ob", now)
    h.record("ob", Outcome(Kind.OVERLOADED, "529"), now)
    h.record("ob", Outcome(Kind.OK, "ok"), now)  # cooling stays cooling: no change
    assert changes == [("ob", Event.ENABLE), ("ob", Event.OVERLOADED)]
