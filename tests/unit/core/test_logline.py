"""core/logline.py: the one line per request (flow comment and log line), from its RouteMeta."""

import pytest

from stickyroute.core.logline import describe, describe_result
from stickyroute.keys import RouteMeta

SECRET_SESSION = "openai/0123456789ab/sk-live-not-for-logs-session-1234abcd"


def meta(**changes: object) -> RouteMeta:
    m = RouteMeta(account="oa", provider="openai", endpoint="responses", affinity="new",
                  session="1234abcd", session_source="header:session-id",
                  session_key=SECRET_SESSION, moved_from=None, injected=[],
                  request_bytes=321, client="0123456789ab", hard=False, dropped_reasoning=0,
                  attempt=0)
    m.update(changes)
    return m


def test_describe_says_where_which_session_how_and_how_big():
    assert describe(meta()) == (
        "responses -> oa | session 1234abcd (header:session-id) | new | 321 B")


def test_describe_names_every_edit_and_a_move():
    line = describe(meta(affinity="moved", moved_from="ob", injected=["include",
                         "prompt_cache_key"], dropped_reasoning=2, attempt=1))
    assert line == ("responses -> oa | session 1234abcd (header:session-id) | moved from ob | "
                    "321 B | +include,prompt_cache_key | dropped 2 encrypted reasoning item(s) | "
                    "retry 1")


def test_describe_without_a_session():
    assert describe(meta(session=None, session_source=None, session_key=None,
                         affinity="unpinned")) == "responses -> oa | unpinned | 321 B"


def test_the_line_shows_the_short_form_never_the_key_or_the_client():
    for line in (describe(meta()), describe_result(meta(status=200, error="x"))):
        assert "sk-live" not in line and "0123456789ab" not in line


@pytest.mark.parametrize("changes, tail", [
    ({"status": 200, "tokens_in": 2000, "tokens_out": 40, "tokens_cached": 1536,
      "cost_micros": 1172, "priced": True},
     "200 | in 2000 / out 40 / cached 1536 (77%) | $0.0012"),
    ({"status": 200, "tokens_in": 10, "tokens_out": 2, "tokens_cached": 0, "priced": False,
      "model": "mystery"}, "200 | in 10 / out 2 / cached 0 (0%) | unpriced model mystery"),
    ({"status": 200, "tokens_in": 0, "priced": False}, "200 | in 0 / out 0 / cached 0 (-) | "
                                                       "unpriced model ?"),
    ({"status": 200, "tokens_in": None}, "200"),  # no usage seen: nothing made up
    ({"status": None, "error": "overloaded_error"}, "- | error overloaded_error"),
    ({"status": 400, "tokens_in": None, "affinity_break": "previous_response_not_found"},
     "400 | AFFINITY BREAK previous_response_not_found"),
    ({}, "-"),  # not answered yet
])
def test_describe_result_adds_what_came_back(changes, tail):
    m = meta(**changes)
    assert describe_result(m) == f"{describe(m)} | {tail}"
