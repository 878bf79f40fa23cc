"""The stop glue without processes: the 503 gate, the error hook's classification, no retry
while stopping, and `done` sealing before the final save. The e2e version is
tests/e2e/test_shutdown.py."""

import asyncio
import json
import logging

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils

from stickyroute.core.stop import Phase
from tests.helpers import addons, flow

ACCOUNTS = """\
accounts:
  - {alias: oa, provider: openai, api_key: sk-acct-oa}
  - {alias: ob, provider: openai, api_key: sk-acct-ob}
  - {alias: an, provider: anthropic, api_key: sk-ant-acct}
"""


class Env:
    def __init__(self, a, tctx, replayed):
        self.addons, self.state = a, a.state
        self.gate, self.follow, self.failover = a.shutdown, a.follow, a.failover
        self.tctx, self.replayed = tctx, replayed

    def stop(self):
        self.tctx.master.should_exit.set()  # what mitmdump's SIGINT/SIGTERM handlers do

    def request(self, session="s1", host="api.openai.com"):
        f = flow(host=host, body={"model": "gpt-5", "input": "hi"},
                 headers=[("session-id", session)])
        f.live = True
        self.gate.request(f)
        self.addons.route.request(f)
        return f

    def inflight(self):
        return sum(self.state.ledger[a].inflight for a in ("oa", "ob"))


@pytest.fixture
def env(tmp_path):
    path = tmp_path / "accounts.yaml"
    path.write_text(ACCOUNTS)
    a = addons()
    replayed: list[http.HTTPFlow] = []

    async def replay(f: http.HTTPFlow) -> None:
        replayed.append(f)
        f.live = True
        a.route.request(f)
        f.response = tutils.tresp(status_code=200, content=b'{"ok":1}')
        await a.failover.response(f)

    a.failover.replay = replay
    with taddons.context(*a) as tctx:
        tctx.configure(a.options, sticky_accounts=str(path))
        yield Env(a, tctx, replayed)


def cut(env, f, msg="server closed connection"):
    f.error = tflow.terr()
    f.error.msg = msg
    env.follow.error(f)
    env.failover.error(f)


def answer(env, f, status):
    f.response = tutils.tresp(status_code=status, content=b'{"error":{"type":"x"}}')
    f.response.headers["content-type"] = "application/json"
    env.failover.responseheaders(f)
    asyncio.run(env.failover.response(f))


def test_running_a_dropped_connection_still_cools_the_account(env):
    f = env.request()
    cut(env, f)
    alias = f.metadata["stickyroute"]["account"]
    assert env.state.health.describe(alias, env.state.clock()).state == "cooling"
    assert env.state.ledger[alias].errors == 1


@pytest.mark.parametrize("msg", ["server closed connection", "connection cancelled",
                                 "Client disconnected."])
def test_a_connection_cut_by_the_stop_is_no_failure_of_the_account(env, msg, caplog):
    f = env.request()
    alias = f.metadata["stickyroute"]["account"]
    changes = []
    env.state.health.on_change = lambda *a: changes.append(a)  # what persist.py shares
    env.stop()
    with caplog.at_level(logging.INFO, logger="stickyroute"):
        cut(env, f, msg)
    assert env.state.health.describe(alias, env.state.clock()).state == "healthy"
    assert changes == [] and env.state.ledger[alias].errors == 0 and env.inflight() == 0
    assert f.metadata["stickyroute"]["outcome"] == "stopped"
    assert f"stopped by shutdown ({msg})" in caplog.text and "failed:" not in caplog.text


def test_requests_that_come_while_stopping_are_refused_and_pin_nothing(env):
    env.stop()
    f = env.request("late")
    assert f.response is not None and f.response.status_code == 503
    assert f.response.headers["connection"] == "close"
    assert f.response.headers["retry-after"] == "1"
    assert json.loads(f.response.content)["error"]["code"] == "proxy_stopping"
    assert f.request.headers["authorization"] == "Bearer sk-client-placeholder"  # unsigned
    assert len(env.state.pins) == 0 and env.inflight() == 0
    assert env.state.stop.phase is Phase.DRAINING


def test_the_gate_leaves_other_hosts_and_a_running_proxy_alone(env):
    assert env.request("before").response is None  # running: routed as always
    env.stop()
    other = flow(host="example.com", body={"x": 1})
    other.live = True
    env.gate.request(other)
    assert other.response is None


def test_no_retry_starts_while_stopping(env):
    f = env.request()
    env.stop()
    answer(env, f, 429)
    assert env.replayed == [] and f.response.status_code == 429


def test_a_retry_under_way_when_the_stop_begins_makes_no_other_attempt(env):
    async def replay_cut_by_the_stop(retry):
        env.replayed.append(retry)
        retry.live = True
        env.addons.route.request(retry)
        env.stop()
        cut(env, retry, "connection cancelled")

    env.failover.replay = replay_cut_by_the_stop
    f = env.request()
    answer(env, f, 429)
    (retry,) = env.replayed  # one attempt, cut: no second one on a third account
    assert f.response.status_code == 429  # the client gets the provider's own answer
    assert retry.metadata["stickyroute"]["outcome"] == "stopped"
    moved_to = retry.metadata["stickyroute"]["account"]
    assert env.state.health.describe(moved_to, env.state.clock()).state == "healthy"


def test_done_seals_before_the_final_save_only_when_the_proxy_stops(env):
    asyncio.run(env.gate.done())  # a script reload: the proxy goes on
    assert env.state.stop.phase is Phase.RUNNING
    env.stop()
    asyncio.run(env.gate.done())  # nothing upstream: sealed at once
    assert env.state.stop.phase is Phase.SEALED
