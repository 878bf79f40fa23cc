import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stickyroute.core import rewrite
from stickyroute.core.peek import body_needed

CODEX = {"model": "gpt-5-codex", "input": [{"type": "message", "role": "user", "content": "hi"}],
         "prompt_cache_key": "t-1", "store": False, "reasoning": {"effort": "low"},
         "include": ["reasoning.encrypted_content"]}


def needed(body: dict, **kw) -> bool:
    args = {"identify_from_body": False, "responses": True, "inject_cache_key": True,
            "inject_include": True, **kw}
    return body_needed(json.dumps(body).encode(), **args)


def test_complete_codex_body_with_a_header_session_is_not_parsed():
    assert not needed(CODEX)
    assert not needed(CODEX, responses=False)


@pytest.mark.parametrize("body", [
    {k: v for k, v in CODEX.items() if k != "prompt_cache_key"},  # the key is to be injected
    {k: v for k, v in CODEX.items() if k != "include"},  # include is to be added
    {**CODEX, "previous_response_id": "resp_1"},  # chain state
    {**CODEX, "input": [{"type": "reasoning", "id": "rs_1", "encrypted_content": "x"}]},
])
def test_bodies_that_something_reads_are_parsed(body):
    assert needed(body)
    assert body_needed(json.dumps(body, separators=(",", ":")).encode(), identify_from_body=False,
                       responses=True, inject_cache_key=True, inject_include=True)


def test_no_header_session_always_parses_and_other_apis_never_need_it():
    assert needed(CODEX, identify_from_body=True)
    assert not needed({"messages": []}, responses=False)


def test_options_off_need_nothing():
    body = {"model": "m", "input": "hi", "store": False, "reasoning": {}}
    assert not needed(body, inject_cache_key=False, inject_include=False)


def test_a_field_name_inside_text_is_not_mistaken_for_the_field():
    body = {**CODEX, "input": 'say "prompt_cache_key" and "reasoning.encrypted_content"'}
    del body["prompt_cache_key"]
    assert needed(body)


fields = st.fixed_dictionaries({}, optional={
    "prompt_cache_key": st.text(min_size=1, max_size=5),
    "store": st.booleans(),
    "reasoning": st.none() | st.just({"effort": "low"}),
    "include": st.lists(st.sampled_from(["reasoning.encrypted_content", "x"]), max_size=2),
    "input": st.text(max_size=20),
})


@given(fields, st.booleans(), st.booleans())
def test_never_skips_a_body_the_rewrite_would_change(body, cache_key, include):
    if not needed(body, inject_cache_key=cache_key, inject_include=include):
        assert rewrite.wanted_fields(body, "k" if cache_key else None, include) == {}


@pytest.mark.parametrize("text", ['\\"reasoning\\"', '"type":"reasoning"', "reasoning"])
def test_text_that_mentions_reasoning_is_not_an_item(text):
    body = {**CODEX, "input": [{"type": "message", "role": "user", "content": text}]}
    assert not needed(body)
