"""Cache economics: the same workload in five scenarios, measured from the fake's request log.

a. one account, straight to the fake upstream (the upper bound of cached-token share)
b. through the proxy over N accounts with `sticky_enabled=false` (requests spread)
c. through the proxy over N accounts, default settings (the headroom strategy: a new
   conversation goes where its system prompt is cached already, within a load bound)
d. (c), with one account answering 429 for a while from the middle of the run
e. conversations sharing 4 system prompts (a workload of its own, more conversations than
   the one above): the one-account ceiling, placement by prompt prefix (the default headroom
   strategy), and placement blind to prefixes (least-sessions), side by side

Every number comes from what the fake upstream saw (which account served each request, with
what usage), never from the addon's own bookkeeping.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
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
from fakeapi import FakeUpstream

from .workload import Conversation, conversations, first_history, grow

SCENARIOS = {
    "a": "one account, direct",
    "b": "proxy, sticky off",
    "c": "proxy, default",
    "d": "proxy, default, one account 429s mid-run",
}
PREFIX_RUNS = {  # (e): name -> (title, sticky_strategy; None: one account, direct)
    "ceiling": ("one account, direct (the ceiling)", None),
    "aware": ("proxy, placed by prompt prefix (headroom, the default)", "headroom"),
    "blind": ("proxy, blind to prefixes (least-sessions)", "least-sessions"),
}
PREFIX_STAGGER = 0.02  # (e): seconds between conversation starts (people start them over time)
MAX_ATTEMPTS = 8  # a client retries a failed turn this often
RETRY_PAUSE = 0.2  # seconds; real clients honour retry-after, the bench keeps it short
_DONE_PREFIX = 'data: {"type":"response.output_text.done"'


@dataclass
class Plan:
    conversations: int
    turns: int
    accounts: int
    fault_requests: int  # how many requests the failing account answers with 429 in (d)
    fault_retry_after: float = 2.0
    prefix_conversations: int = 48  # (e)
    prefix_turns: int = 4


@dataclass
class ScenarioResult:
    name: str
    title: str
    input_tokens: int = 0
    cached_tokens: int = 0
    turns_ok: int = 0
    turns_failed: int = 0
    client_errors: int = 0  # error answers a client saw (each retry that failed counts)
    affinity_breaks: int = 0  # a conversation's turn served by another account than its last
    requests_per_account: dict[str, int] = field(default_factory=dict)
    sessions_per_account: dict[str, int] = field(default_factory=dict)
    cache_by_turn: list[float] = field(default_factory=list)
    tokens_by_turn: list[tuple[int, int]] = field(default_factory=list)  # (cached, prompt)
    seconds: float = 0.0

    @property
    def share(self) -> float:
        return self.cached_tokens / self.input_tokens if self.input_tokens else 0.0

    def share_from(self, turn: int) -> float:
        """Cached share over turns `turn`.. (0-based): without the conversations' first turns."""
        cached = sum(c for c, _ in self.tokens_by_turn[turn:])
        prompt = sum(p for _, p in self.tokens_by_turn[turn:])
        return cached / prompt if prompt else 0.0

    @staticmethod
    def spread(counts: dict[str, int], accounts: int) -> float | None:
        if accounts < 2:
            return None
        values = [counts.get(f"acct-{i}", 0) for i in range(accounts)]
        return max(values) / min(values) if min(values) else float("inf")


class _Progress:
    """Counts finished turns; fires a callback once when the run is halfway."""

    def __init__(self, halfway: int, on_half: Any) -> None:
        self.lock = threading.Lock()
        self.done = 0
        self.halfway = halfway
        self.on_half = on_half
        self.errors = 0
        self.failed = 0

    def turn_done(self) -> None:
        with self.lock:
            self.done += 1
            fire = self.done == self.halfway and self.on_half is not None
        if fire:
            self.on_half()


def _talk(client: httpx2.Client, url: str, auth: dict[str, str], conv: Conversation,
          progress: _Progress, stagger: float = 0.0) -> None:
    time.sleep(conv.index * stagger)
    history = first_history(conv)
    for turn in range(conv.turns):
        answer = None
        for _ in range(MAX_ATTEMPTS):
            answer = _one_turn(client, url, {**conv.headers(turn), **auth}, conv.body(history))
            if answer is not None:
                break
            with progress.lock:
                progress.errors += 1
            time.sleep(RETRY_PAUSE)
        if answer is None:
            with progress.lock:
                progress.failed += 1
            answer = ""  # the user moves on; the history still grows
        progress.turn_done()
        if turn + 1 < conv.turns:
            grow(history, conv, turn, answer)


def _one_turn(client: httpx2.Client, url: str, headers: dict[str, str],
              body: bytes) -> str | None:
    """The streamed answer's text, or None when the turn got an error."""
    import json

    try:
        with client.stream("POST", url, headers=headers, content=body) as r:
            if r.status_code != 200:
                r.read()
                return None
            for line in r.iter_lines():
                if line.startswith(_DONE_PREFIX):
                    return str(json.loads(line[6:])["text"])
    except httpx2.HTTPError:
        return None
    return None


def run_scenario(name: str, plan: Plan, convs: list[Conversation], workdir: Path,
                 strategy: str | None = None, title: str | None = None,
                 stagger: float = 0.0) -> ScenarioResult:
    """One run; `strategy` sets sticky_strategy (None: the default); conversation i starts
    i * `stagger` seconds in (0: all at once)."""
    direct = name in ("a", "e/ceiling")
    n_accounts = 1 if direct else plan.accounts
    keys = {f"sk-bench-{i}": f"acct-{i}" for i in range(n_accounts)}
    result = ScenarioResult(name, title or SCENARIOS[name])
    with FakeUpstream(keys=keys) as fake:
        on_half = None
        if name == "d":
            def on_half() -> None:
                fake.add_fault(account="acct-0", kind="429", count=plan.fault_requests,
                               retry_after=plan.fault_retry_after)
        progress = _Progress(len(convs) * plan.turns // 2, on_half)
        proxy = None
        if direct:
            client = httpx2.Client(trust_env=False, timeout=60,
                                   limits=httpx2.Limits(max_connections=len(convs) + 4))
            url, auth = f"{fake.url}/v1/responses", {"authorization": "Bearer sk-bench-0"}
        else:
            options: dict[str, Any] = {
                "sticky_accounts": str(accounts_file(
                    workdir / f"accounts-{name.replace('/', '-')}.yaml", keys)),
                "sticky_enabled": name != "b", **redirect_options(fake)}
            if strategy is not None:
                options["sticky_strategy"] = strategy
            proxy = Mitmdump([STICKY_ADDON, REDIRECT_ADDON], options,
                             confdir=workdir / f"mitm-{name.replace('/', '-')}").start()
            client = raw_client(proxy, timeout=60,
                                limits=httpx2.Limits(max_connections=len(convs) + 4))
            url, auth = f"{OPENAI_BASE_URL}/responses", {"authorization": "Bearer sk-client"}
        started = time.perf_counter()
        try:
            with client, ThreadPoolExecutor(len(convs)) as pool:
                for f in [pool.submit(_talk, client, url, auth, c, progress, stagger)
                          for c in convs]:
                    f.result()
        finally:
            if proxy is not None:
                proxy.stop()
        result.seconds = time.perf_counter() - started
        _tally(result, fake.requests(), max((c.turns for c in convs), default=0))
    result.client_errors, result.turns_failed = progress.errors, progress.failed
    return result


def _tally(result: ScenarioResult, log: list[dict[str, Any]], turns: int) -> None:
    per_turn_in: Counter[int] = Counter()
    per_turn_cached: Counter[int] = Counter()
    served: dict[int, list[tuple[int, str]]] = defaultdict(list)
    requests: Counter[str] = Counter()
    for e in log:
        conv, turn = e["headers"].get("x-bench-conv"), e["headers"].get("x-bench-turn")
        if conv is None or turn is None or e["status"] != 200 or not e["usage"]:
            continue
        t = int(turn)
        result.turns_ok += 1
        result.input_tokens += e["usage"]["input_tokens"]
        result.cached_tokens += e["usage"]["cached_tokens"]
        per_turn_in[t] += e["usage"]["input_tokens"]
        per_turn_cached[t] += e["usage"]["cached_tokens"]
        requests[e["account"]] += 1
        served[int(conv)].append((t, e["account"]))
    sessions: Counter[str] = Counter()
    for seq in served.values():
        seq.sort()
        sessions[seq[0][1]] += 1
        result.affinity_breaks += sum(1 for (_, x), (_, y) in zip(seq, seq[1:], strict=False)
                                      if x != y)
    result.requests_per_account = dict(sorted(requests.items()))
    result.sessions_per_account = dict(sorted(sessions.items()))
    result.cache_by_turn = [per_turn_cached[t] / per_turn_in[t] if per_turn_in[t] else 0.0
                            for t in range(turns)]
    result.tokens_by_turn = [(per_turn_cached[t], per_turn_in[t]) for t in range(turns)]


def run(plan: Plan, workdir: Path, only: str = "abcd") -> list[ScenarioResult]:
    convs = conversations(plan.conversations, plan.turns)
    return [run_scenario(name, plan, convs, workdir) for name in only if name in SCENARIOS]


def run_prefixes(plan: Plan, workdir: Path) -> list[ScenarioResult]:
    """(e): many conversations over 4 shared system prompts, with and without placement by
    prefix, against the same workload on one account."""
    convs = conversations(plan.prefix_conversations, plan.prefix_turns, seed=11)
    return [run_scenario(f"e/{name}", plan, convs, workdir, strategy, title, PREFIX_STAGGER)
            for name, (title, strategy) in PREFIX_RUNS.items()]
