"""state.py: the one State takes new settings and new accounts into service, and Kept holds the
client's requests while their flows are in flight."""

import dataclasses

from stickyroute.config.accounts import parse_accounts
from stickyroute.core.health import DISABLED_BY_FILE, Event
from stickyroute.core.observe import Usage
from stickyroute.core.outcome import Kind, Outcome
from stickyroute.state import Kept, State
from stickyroute.stores.base import MemoryStore
from tests.helpers import ACCOUNTS, Clock

TWO = """\
accounts:
  - {alias: oa, provider: openai, api_key: sk-acct-oa}
  - {alias: ob, provider: openai, api_key: sk-acct-ob, enabled: false}
"""


def test_a_fresh_state_starts_on_its_clock_with_the_default_settings():
    clock = Clock(42.0)
    st = State(clock=clock)
    assert st.started == 42.0 and not st.shared and isinstance(st.store, MemoryStore)
    assert st.pins.idle_timeout == st.settings.idle_timeout == 3600  # defaults applied
    assert st.chooser.strategy == "headroom"  # least-sessions until windows or warm prompts


def test_use_settings_reaches_every_table():
    st = State(clock=Clock())
    st.use_settings(dataclasses.replace(st.settings, idle_timeout=60, max_age=600,
                                        max_sessions=10))
    assert (st.pins.idle_timeout, st.pins.max_age, st.pins.max_size) == (60, 600, 10)
    assert (st.chains.ttl, st.chains.max_size) == (600, 40)  # chains live as long as pins


def test_the_chooser_is_replaced_only_when_the_strategy_changes():
    st = State(clock=Clock())
    chooser = st.chooser
    st.use_settings(dataclasses.replace(st.settings, idle_timeout=60))
    assert st.chooser is chooser  # round-robin keeps its place across unrelated changes
    st.use_settings(dataclasses.replace(st.settings, strategy="round-robin"))
    assert st.chooser is not chooser and st.chooser.strategy == "round-robin"


def test_use_accounts_takes_the_files_prices():
    st = State(clock=Clock())
    st.use_accounts(parse_accounts(ACCOUNTS + "prices:\n  my-model: {input: 1, output: 2}\n",
                                   env={}))
    assert st.accounts.get("oa") is not None
    assert st.prices.cost("my-model", Usage(1_000_000, 0, 1_000_000)) == (3_000_000, True)


def test_enabled_false_in_the_file_is_a_health_disable_an_operator_cannot_undo():
    clock = Clock()
    st = State(clock=clock)
    shared = []
    st.health.on_change = lambda alias, event, now: shared.append((alias, event))
    st.use_accounts(parse_accounts(TWO, env={}))
    view = st.health.describe("ob", clock())
    assert (view.state, view.reason) == ("disabled", DISABLED_BY_FILE)
    assert not st.health.available("ob", clock()) and st.health.available("oa", clock())
    assert not st.health.enable("ob", clock())  # only the file can put it back
    assert not st.health.available("ob", clock())
    # this proxy's file says so: not saved for a restart, not shared with other proxies
    assert "ob" not in st.health.export_state() and shared == []
    st.health.disable("oa", "by hand", clock())
    assert set(st.health.export_state()) == {"oa"} and shared == [("oa", Event.DISABLE)]


def test_the_file_puts_back_what_it_took_out():
    clock = Clock()
    st = State(clock=clock)
    st.use_accounts(parse_accounts(TWO, env={}))
    st.use_accounts(parse_accounts(TWO.replace(", enabled: false", ""), env={}))
    assert st.health.available("ob", clock())


def test_a_changed_entry_starts_fresh_and_a_removed_one_is_forgotten():
    clock = Clock()
    st = State(clock=clock)
    st.use_accounts(parse_accounts(ACCOUNTS, env={}))
    revoked = Outcome(Kind.REVOKED, "credential rejected (401)")
    for alias in ("oa", "ob"):
        st.health.record(alias, revoked, clock())
    st.use_accounts(parse_accounts(ACCOUNTS.replace("sk-acct-oa", "sk-acct-oa2"), env={}))
    assert st.health.available("oa", clock())  # a new key may well work
    assert not st.health.available("ob", clock())  # same entry: still revoked
    st.use_accounts(parse_accounts(TWO.replace("ob", "oc"), env={}))
    assert "ob" not in st.health.export_state()


def test_kept_is_bounded_and_drops_the_oldest():
    kept = Kept[str](limit=2)
    for flow_id in ("f1", "f2", "f3"):
        kept.keep(flow_id, flow_id.upper())
    assert len(kept) == 2 and kept.pop("f1") is None
    assert kept.pop("f2") == "F2" and kept.pop("f2") is None and len(kept) == 1
