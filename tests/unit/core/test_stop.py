"""The phases of a stop, the drain's next step, and how a cut connection is classified."""

import json

import pytest

from stickyroute.core.health import Health, State
from stickyroute.core.outcome import Kind
from stickyroute.core.stop import Phase, Step, Stop, connection_outcome, refusal


def test_a_stop_begins_once_and_ends_sealed():
    stop = Stop()
    assert not stop.stopping and stop.phase is Phase.RUNNING
    assert stop.begin(10.0) is True
    assert stop.begin(11.0) is False  # said once: the first time
    assert stop.stopping and stop.phase is Phase.DRAINING and stop.began == 10.0
    stop.seal(12.0)
    assert stop.phase is Phase.SEALED and stop.began == 10.0 and stop.stopping


def test_sealing_without_a_drain_still_records_when_the_stop_began():
    stop = Stop()
    stop.seal(5.0)
    assert stop.phase is Phase.SEALED and stop.began == 5.0


@pytest.mark.parametrize("inflight, now, step", [
    (0, 100.0, Step.SEAL),  # nothing upstream: save at once
    (3, 100.0, Step.WAIT),
    (3, 104.9, Step.WAIT),
    (3, 105.0, Step.CUT),  # the grace period is over
    (1, 200.0, Step.CUT),
    (0, 200.0, Step.SEAL),
])
def test_the_drain_waits_for_requests_upstream_within_the_grace_period(inflight, now, step):
    stop = Stop()
    stop.begin(100.0)
    assert stop.next_step(inflight, grace=5, now=now) is step


def test_no_grace_period_cuts_at_once():
    stop = Stop()
    stop.begin(100.0)
    assert stop.next_step(2, grace=0, now=100.0) is Step.CUT


# what mitmproxy 12.2.3 writes into flow.error.msg when a connection ends
MESSAGES = ["server closed connection", "connection cancelled", "Client disconnected.",
            "Connection killed."]


@pytest.mark.parametrize("msg", MESSAGES)
def test_while_stopping_any_ending_is_stopped_by_shutdown(msg):
    outcome, failed = connection_outcome(msg, answered=False, stopping=True)
    assert outcome.kind is Kind.STOPPED and not failed
    assert outcome.reason == f"stopped by shutdown ({msg})"


@pytest.mark.parametrize("msg, answered, kind, failed", [
    ("server closed connection", False, Kind.CONNECTION, True),
    ("connection cancelled", False, Kind.CONNECTION, True),
    ("Client disconnected.", False, Kind.NEUTRAL, False),
    ("Connection killed.", False, Kind.NEUTRAL, False),
    ("server closed connection", True, Kind.NEUTRAL, False),  # answered: the body was cut
])
def test_while_running_the_message_says_whose_fault(msg, answered, kind, failed):
    outcome, counted = connection_outcome(msg, answered=answered, stopping=False)
    assert (outcome.kind, counted) == (kind, failed)


def test_a_long_message_is_cut_short():
    outcome, _ = connection_outcome("x" * 500, answered=False, stopping=True)
    assert outcome.reason is not None and len(outcome.reason) < 120


def test_a_stopped_request_changes_no_health():
    health = Health()
    changes = []
    health.on_change = lambda alias, event, now: changes.append(alias)
    outcome, _ = connection_outcome("server closed connection", answered=False, stopping=True)
    assert health.record("a", outcome, 1.0) == (State.HEALTHY, State.HEALTHY)
    assert changes == [] and health.export_state() == {}


@pytest.mark.parametrize("provider, kind", [("openai", "server_error"),
                                            ("anthropic", "overloaded_error")])
def test_the_refusal_is_provider_shaped_and_asks_for_a_retry(provider, kind):
    e = refusal(provider)
    assert e.status == 503 and e.code == "proxy_stopping"
    assert e.headers()["retry-after"] == "1"
    assert e.headers()["x-stickyroute-error"] == "proxy_stopping"
    doc = json.loads(e.body())
    assert doc["error"]["type"] == kind and "stopping" in doc["error"]["message"]
