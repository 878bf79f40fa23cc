"""core/chains.py: response ids and reasoning items that tie a request to its account."""

from stickyroute.core.chains import ChainMap
from stickyroute.stores.base import Section


def test_chain_learn_find_and_ttl():
    chains = ChainMap(ttl=100, max_size=10)
    chains.learn("openai/c1", ["resp_1", "rs_1"], "openai/c1/s", "oa", now=0)
    link = chains.find("openai/c1", {"previous_response_id": "resp_1"}, now=50)
    assert link and link.session == "openai/c1/s" and link.alias == "oa"
    via_item = chains.find("openai/c1", {"input": [{"type": "message"},
                                                   {"type": "reasoning", "id": "rs_1"}]}, now=50)
    assert via_item and via_item.source == "reasoning"
    assert chains.find("openai/other-client", {"previous_response_id": "resp_1"}, now=50) is None
    assert chains.find("openai/c1", {"previous_response_id": "resp_1"}, now=100) is None
    assert len(chains) == 1  # the expired one went on read


def test_chain_expire_costs_what_expired_and_size_is_bounded():
    chains = ChainMap(ttl=10, max_size=3)
    for i in range(5):
        chains.learn("ns", [f"r{i}"], "s", "a", now=i)
    assert len(chains) == 3 and chains.get("ns", "r0", 0) is None
    assert chains.expire(now=13) == 2  # r2 (learned at 2) and r3 (3) are 10 old
    assert len(chains) == 1 and chains.get("ns", "r4", 13)
    assert chains.remove_alias("a") == 1 and len(chains) == 0


def test_chain_ignores_junk_bodies():
    chains = ChainMap()
    for body in ({}, {"previous_response_id": 5}, {"input": "text"}, {"input": [1, None, {}]}):
        assert chains.find("ns", body, 0) is None


def test_chain_map_round_trips_through_a_store_section():
    old = ChainMap(ttl=100)
    old.learn("openai/c1", ["resp_1", "rs_1"], "openai/c1/s", "acct-a", now=10)
    old.learn("openai/c1", ["resp_2"], "openai/c1/s", "acct-a", now=50)
    assert isinstance(old, Section)
    new = ChainMap(ttl=100)
    new.import_state(old.export_state() + [["bad"], None, [1, 2, 3, 4, 5]], now=120)
    assert new.get("openai/c1", "resp_1", 120) is None  # expired while saved
    link = new.get("openai/c1", "resp_2", 120)
    assert link is not None and link.alias == "acct-a" and link.session == "openai/c1/s"
