import pytest

from stickyroute.config.prices import parse_prices
from stickyroute.core.chains import ChainMap
from stickyroute.core.observe import Usage
from stickyroute.core.prices import PriceTable


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


@pytest.mark.parametrize("model, cost", [
    # gpt-5: 1000 plain * 1.25 + 1000 cached * 0.125 + 100 out * 10 per million
    ("gpt-5-2025-08-07", 1250 + 125 + 1000),
    ("gpt-5-mini-2025-08-07", 250 + 25 + 200),  # longest prefix, not gpt-5
])
def test_openai_cost(model, cost):
    assert PriceTable().cost(model, Usage(input=2000, cached=1000, output=100)) == (cost, True)


def test_anthropic_cost_bills_cache_writes():
    usage = Usage(input=1000 + 2000 + 400, cached=2000, output=100, cache_write=400)
    micros, known = PriceTable().cost("claude-sonnet-4-5-20250929", usage)
    assert known and micros == 3000 + 600 + 1500 + 1500


def test_unknown_model_costs_nothing_and_says_so():
    assert PriceTable().cost("llama-9", Usage(10, 0, 10)) == (0, False)
    assert PriceTable().cost(None, Usage(10, 0, 10)) == (0, False)


def test_overrides():
    table = PriceTable(parse_prices({"gpt-5": {"input": 2, "output": 20}, "my-model": {
        "input": 1, "cached_input": 0.5, "output": 3}}))
    assert table.cost("gpt-5", Usage(1_000_000, 0, 0)) == (2_000_000, True)
    assert table.cost("gpt-5", Usage(1_000_000, 1_000_000, 0)) == (2_000_000, True)
    assert table.cost("my-model-v2", Usage(0, 0, 1_000_000)) == (3_000_000, True)
    assert table.cost("gpt-4o", Usage(1_000_000, 0, 0)) == (2_500_000, True)  # defaults stay


@pytest.mark.parametrize("raw, match", [
    ({"m": 5}, "expected a mapping"),
    ({"m": {"input": 1}}, "input and output are required"),
    ({"m": {"input": -1, "output": 1}}, "must be a number"),
    ({"m": {"input": "1", "output": 1}}, "must be a number"),
    ({"m": {"input": 1, "output": 1, "writes": 2}}, "unknown field 'writes'"),
])
def test_bad_overrides(raw, match):
    with pytest.raises(ValueError, match=match):
        parse_prices(raw)


def test_chain_map_round_trips_through_a_store_section():
    from stickyroute.core.chains import ChainMap
    from stickyroute.stores.base import Section

    old = ChainMap(ttl=100)
    old.learn("openai/c1", ["resp_1", "rs_1"], "openai/c1/s", "acct-a", now=10)
    old.learn("openai/c1", ["resp_2"], "openai/c1/s", "acct-a", now=50)
    assert isinstance(old, Section)
    new = ChainMap(ttl=100)
    new.import_state(old.export_state() + [["bad"], None, [1, 2, 3, 4, 5]], now=120)
    assert new.get("openai/c1", "resp_1", 120) is None  # expired while saved
    link = new.get("openai/c1", "resp_2", 120)
    assert link is not None and link.alias == "acct-a" and link.session == "openai/c1/s"
