"""The soak's verdict: which conversations it counts as lost, and why."""

from devtools.soak import lost_conversations, stop_summary

FIRST = """\
[10:00:01] stickyroute: messages -> anthropic-b | session w6-c1161 (header:x-claude-code-session-id) | new | 102 B | 200
[10:00:02] stickyroute: stopping: 2 requests upstream get up to 5 s to finish; new requests are answered 503 until the restart
[10:00:02] stickyroute: anthropic /v1/messages -> 503: the proxy is stopping
[10:00:07] stickyroute: messages -> anthropic-b | session w6-c1161 (header:x-claude-code-session-id) | hit | 90 B | stopped by shutdown (server closed connection)
"""
SECOND = """\
[10:00:09] stickyroute: messages -> anthropic-c | session w6-c1161 (header:x-claude-code-session-id) | new | 102 B | 200
"""


def test_a_conversation_that_changed_account_across_the_restart_is_lost_and_says_why():
    served = {"w6-c1161": [(1.0, "anthropic-b"), (9.0, "anthropic-c")],
              "w1-c1": [(1.0, "openai-a"), (9.0, "openai-a")]}
    (lost,) = lost_conversations(served, set(), 8.0, [FIRST, SECOND])
    assert lost["conversation"] == "w6-c1161" and lost["across_restart"]
    assert "anthropic-b before the restart and by anthropic-c after it" in lost["why"]
    assert lost["accounts"] == ["anthropic-b (before restart)", "anthropic-c (after restart)"]
    assert lost["log"][-1].startswith("proxy 1: ") and "| new |" in lost["log"][-1]
    assert any("stopped by shutdown" in line for line in lost["log"])


def test_a_change_within_one_run_names_the_turn():
    served = {"w0-c7": [(1.0, "openai-a"), (2.0, "openai-a"), (3.0, "openai-b")]}
    (lost,) = lost_conversations(served, set(), None, [""])
    assert not lost["across_restart"]
    assert lost["why"] == ("changed from openai-a to openai-b at its served turn 3 without an "
                           "announced move")
    assert lost["accounts"] == ["openai-a", "openai-b"]


def test_an_announced_move_is_not_lost():
    served = {"w0-c1160": [(1.0, "anthropic-a"), (2.0, "anthropic-b")]}
    assert lost_conversations(served, {"w0-c1160"}, None, [""]) == []


def test_the_stop_summary_counts_what_the_stop_did():
    summary = stop_summary(FIRST)
    assert summary == {"seen": True, "refused": 1, "stopped_by_shutdown": 1,
                       "counted_against_accounts": []}
    old = ("stickyroute: account openai-b healthy -> cooling for 2 s: connection error "
           "(connection cancelled)\n")
    assert stop_summary(old)["seen"] is False
