"""(f) Subscription windows: how many conversations finish before an account hits its limit.

Three subscription accounts start a 5-hour window unevenly used (say 70%, 35%, 0%); every
request adds the same step to the window of the account that serves it, and a window at 100%
answers the provider's limit-reached 429. Short conversations start one after another (a few
at a time) through the proxy, placed by:
- headroom (the default): no new conversation on an account past sticky_drain_at while another
  is below it, else the most room left;
- round-robin: turn by turn over the accounts, with draining accounts left alone too (every
  strategy does that);
- round-robin with sticky_drain_at=100: blind to the windows, as before they were read.
The count is the conversations whose every turn was answered before the fake answered its first
limit-reached 429 (the proxy then retries on another account, so clients may not see it): after
that, some account is used up. Everything is read from the fake's request log.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from devtools.harness import (
    OPENAI_BASE_URL,
    REDIRECT_ADDON,
    STICKY_ADDON,
    Mitmdump,
    accounts_file,
    raw_client,
    redirect_options,
)
from fakeapi import FakeUpstream, UsagePlan

WINDOW = 300  # minutes: the 5-hour window
RUNS = {  # name -> (title, options)
    "headroom": ("headroom (the default)", {}),
    "round-robin": ("round-robin", {"sticky_strategy": "round-robin"}),
    "blind": ("round-robin, windows ignored (sticky_drain_at=100)",
              {"sticky_strategy": "round-robin", "sticky_drain_at": 100}),
}


@dataclass(frozen=True)
class LimitsPlan:
    used: tuple[float, ...] = (70.0, 35.0, 0.0)  # % of the window each account starts with
    step: float = 2.0  # % one request adds
    turns: int = 6  # per conversation
    conversations: int = 60  # more than the accounts can take: the run ends at the first limit
    concurrent: int = 3  # conversations in progress at once


@dataclass
class LimitsResult:
    name: str
    title: str
    completed: int = 0  # conversations done before the first limit-reached answer
    requests: int = 0  # requests served before it
    limited: str | None = None  # the account that answered it (None: no limit was reached)
    used_then: dict[str, float] = field(default_factory=dict)  # each account's % at the end
    seconds: float = 0.0


def _body(conv: int, turn: int) -> bytes:
    return json.dumps({"model": "gpt-5-codex", "instructions": f"You are tool {conv}.",
                       "input": [{"role": "user", "content": f"step {turn} of task {conv}"}],
                       "store": False}).encode()


def _talk(client: httpx2.Client, conv: int, turns: int, stop: threading.Event) -> None:
    session = f"limits-{conv}"
    for turn in range(turns):
        client.post(f"{OPENAI_BASE_URL}/responses", content=_body(conv, turn), headers={
            "authorization": "Bearer sk-client", "content-type": "application/json",
            "session-id": session, "x-bench-conv": str(conv), "x-bench-turn": str(turn),
            "x-fake-output-tokens": "20"})
        if stop.is_set():
            return


def run_one(name: str, plan: LimitsPlan, workdir: Path) -> LimitsResult:
    title, extra = RUNS[name]
    keys = {f"sk-bench-{i}": f"acct-{i}" for i in range(len(plan.used))}
    result = LimitsResult(name, title)
    with FakeUpstream(keys=keys, usage=UsagePlan(windows=(WINDOW,), steps=(plan.step,))) as fake:
        for i, used in enumerate(plan.used):
            fake.set_usage(f"acct-{i}", WINDOW, used_percent=used, resets_in=4 * 3600)
        options: dict[str, Any] = {
            "sticky_accounts": str(accounts_file(workdir / f"accounts-f-{name}.yaml", keys)),
            **redirect_options(fake), **extra}
        proxy = Mitmdump([STICKY_ADDON, REDIRECT_ADDON], options,
                         confdir=workdir / f"mitm-f-{name}").start()
        stop = threading.Event()
        started = time.perf_counter()

        def watch() -> None:  # end the run soon after the first limit is reached
            while not stop.wait(0.05):
                if fake.requests(status=429):
                    stop.set()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            with raw_client(proxy, timeout=60) as client, ThreadPoolExecutor(
                    plan.concurrent) as pool:
                convs = iter(range(plan.conversations))

                def worker() -> None:
                    for conv in convs:  # one shared iterator: each conversation runs once
                        if stop.is_set():
                            return
                        _talk(client, conv, plan.turns, stop)

                for f in [pool.submit(worker) for _ in range(plan.concurrent)]:
                    f.result()
        finally:
            stop.set()
            watcher.join()
            proxy.stop()
        result.seconds = time.perf_counter() - started
        _tally(result, fake.requests(), plan.turns)
        result.used_then = {f"acct-{i}": _used(fake.usage_of(f"acct-{i}"))
                            for i in range(len(plan.used))}
    return result


def _used(meters: list[dict[str, Any]]) -> float:
    return float(next((m["used_percent"] for m in meters if m["minutes"] == WINDOW), 0.0))


def _tally(result: LimitsResult, log: list[dict[str, Any]], turns: int) -> None:
    done: set[str] = set()
    for e in log:  # in the order the fake answered
        if e["status"] == 429:
            result.limited = e["account"]
            break
        if e["status"] == 200 and e["headers"].get("x-bench-conv") is not None:
            result.requests += 1
            if e["headers"].get("x-bench-turn") == str(turns - 1):
                done.add(e["headers"]["x-bench-conv"])
    result.completed = len(done)


def run(plan: LimitsPlan, workdir: Path) -> list[LimitsResult]:
    return [run_one(name, plan, workdir) for name in RUNS]
