"""admin/metrics.py: the Prometheus text for requests, tokens, pins, health and sweeps."""

from tests.helpers import api_call, route_session


def test_metrics(admin_env):
    sticky, _, api, clock = admin_env
    a = route_session(sticky, "conv-1")["account"]
    route_session(sticky, "conv-1")
    sticky.state.ledger[a].tokens_in, sticky.state.ledger[a].tokens_cached = 100, 80
    clock.t += 10_000
    sticky.sweeper.sweep()
    reply, text = api_call(api, "GET", "/metrics")
    assert reply.status == 200 and reply.content_type.startswith("text/plain; version=0.0.4")
    text = text.decode()
    for line in (f'stickyroute_requests_total{{account="{a}",affinity="hit"}} 1.0',
                 f'stickyroute_requests_total{{account="{a}",affinity="moved"}} 0.0',
                 f'stickyroute_tokens_total{{account="{a}",kind="cached"}} 80.0',
                 f'stickyroute_pins{{account="{a}"}} 0.0',
                 'stickyroute_account_state{account="cg",provider="chatgpt",state="disabled"} 1.0',
                 "stickyroute_sweep_duration_seconds_count 1.0",
                 "stickyroute_swept_pins_total 1.0", "stickyroute_sessions 0.0"):
        assert line in text
