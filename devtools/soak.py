"""Soak: real SDK clients, many conversations, random faults and one proxy restart.

    python -m devtools.soak --minutes 3        (or: just soak)

Starts the fake upstream and mitmdump with stickyroute, runs conversations from worker threads
(OpenAI Responses chained with previous_response_id, Anthropic Messages with a Claude Code
session header), injects random 429/500/529/401/drops with the fake's add_fault, restarts the
proxy once half way (a 401 is a revoked key: a few seconds later the soak edits that account's
entry, as an operator would), and reports: lost pins (a conversation served by more than one
account without the proxy announcing a fallback move), moves by fallback,
affinity breaks (the fake answered previous_response_not_found / invalid_encrypted_content),
failed turns, and the mitmdump process's memory over time. Every lost conversation is listed
with why it counts as lost, the accounts that served it, and the proxy's log lines about it;
"stop" says what the restart's stop did (requests refused, requests cut, anything it counted
against an account).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from devtools.fuzz import rss_kib
from devtools.harness import (
    ANTHROPIC_KEYS,
    OPENAI_KEYS,
    REDIRECT_ADDON,
    STICKY_ADDON,
    Mitmdump,
    anthropic_client,
    find_free_port,
    make_fake,
    openai_client,
    redirect_options,
    write_accounts,
)
from stickyroute.config.settings import OPTIONS

FAULTS = ["429", "500", "529", "401", "drop"]
BREAKS = ("previous_response_not_found", "invalid_encrypted_content")
TURNS = 8  # then the worker starts a new conversation
FIX_AFTER = 5.0  # seconds until the "operator" edits a revoked account's entry (re-enables it)
MOVED = re.compile(r"session (\S+) \([^)]*\) \| moved from ")


class Soak:
    def __init__(self, minutes: float, workers: int, seed: int) -> None:
        self.deadline = time.monotonic() + minutes * 60
        self.minutes = minutes
        self.workers = workers
        self.rng = random.Random(seed)
        self.dir = Path(tempfile.mkdtemp(prefix="soak-"))
        self.accounts = self.dir / "accounts.yaml"
        self.weights: dict[str, int] = {}
        write_accounts(self.accounts)
        self.port = find_free_port()
        self.has_store = any(o[0] == "sticky_store" for o in OPTIONS)
        self.proxy: Mitmdump | None = None
        self.lock = threading.Lock()
        self.turns_ok = 0
        self.turns_failed = 0
        self.attempt_errors: dict[str, int] = defaultdict(int)
        self.conversations = 0
        self.rss: list[tuple[float, int]] = []
        self.restarted_at: float | None = None
        self.up = threading.Event()

    def start_proxy(self) -> Mitmdump:
        options = {"sticky_accounts": str(self.accounts), "flow_detail": 0,
                   **redirect_options(self.fake)}
        if self.has_store:
            options["sticky_store"] = str(self.dir / "pins.json")
        proxy = Mitmdump([STICKY_ADDON, REDIRECT_ADDON], options, confdir=self.dir / "mitm",
                         port=self.port)
        return proxy.start()

    def run(self) -> dict[str, Any]:
        with make_fake() as fake:
            self.fake = fake
            self.proxy = self.start_proxy()
            self.up.set()
            t0 = time.monotonic()
            threads = [threading.Thread(target=self.worker, args=(i,), daemon=True)
                       for i in range(self.workers)]
            for t in threads:
                t.start()
            restarted = False
            outputs = []
            fixes: list[tuple[float, str]] = []
            while time.monotonic() < self.deadline:
                time.sleep(1.0)
                now = time.monotonic() - t0
                if self.proxy.proc and int(now) % 5 == 0:
                    self.rss.append((round(now), rss_kib(self.proxy.proc.pid)["VmRSS"]))
                if self.rng.random() < 0.5:  # about one fault every two seconds
                    account = self.rng.choice([*OPENAI_KEYS.values(), *ANTHROPIC_KEYS.values()])
                    kind = self.rng.choice(FAULTS)
                    fake.add_fault(account=account, kind=kind, count=1, retry_after=1)
                    if kind == "401":  # a revoked key: an operator fixes the file a bit later
                        fixes.append((now + FIX_AFTER, account))
                for due in [f for f in fixes if f[0] <= now]:
                    fixes.remove(due)
                    self.weights[due[1]] = 3 - self.weights.get(due[1], 1)  # 1 <-> 2: an edit
                    write_accounts(self.accounts, self.weights)
                if not restarted and now > self.minutes * 30:
                    restarted = True
                    self.up.clear()
                    outputs.append(self.proxy.stop())
                    self.restarted_at = time.time()
                    self.proxy = self.start_proxy()
                    self.up.set()
            for t in threads:
                t.join(60)
            outputs.append(self.proxy.stop())
            for i, out in enumerate(outputs):
                (self.dir / f"mitmdump-{i}.log").write_text(out)
            return self.report(fake.requests(), outputs, time.monotonic() - t0)

    def worker(self, n: int) -> None:
        rng = random.Random(n)
        while time.monotonic() < self.deadline:
            with self.lock:
                self.conversations += 1
                conv = f"w{n}-c{self.conversations}"
            try:
                if rng.random() < 0.5:
                    self.openai_conversation(conv)
                else:
                    self.anthropic_conversation(conv)
            except Exception as e:  # noqa: BLE001 - keep soaking; counted below
                with self.lock:
                    self.attempt_errors[f"worker:{type(e).__name__}"] += 1

    def turn(self, call: Any) -> Any:
        for _ in range(6):
            if time.monotonic() > self.deadline:
                return None
            self.up.wait(30)
            assert self.proxy is not None
            try:
                result = call(self.proxy)
                with self.lock:
                    self.turns_ok += 1
                return result
            except Exception as e:  # noqa: BLE001 - injected faults surface here
                with self.lock:
                    self.attempt_errors[type(e).__name__] += 1
                time.sleep(0.5)
        with self.lock:
            self.turns_failed += 1
        return None

    def openai_conversation(self, conv: str) -> None:
        previous: str | None = None
        for turn in range(TURNS):
            # Codex style: a session header, and the chain through previous_response_id.
            def call(proxy: Mitmdump, turn: int = turn, previous: str | None = previous) -> Any:
                client = openai_client(proxy, max_retries=2)
                kw: dict[str, Any] = {"extra_headers": {"x-soak-conv": conv, "session_id": conv}}
                if previous:
                    kw["previous_response_id"] = previous
                return client.responses.create(model="gpt-5", input=f"{conv} turn {turn}", **kw)
            response = self.turn(call)
            if response is None:
                return
            previous = response.id

    def anthropic_conversation(self, conv: str) -> None:
        messages: list[dict[str, Any]] = []
        for turn in range(TURNS):
            messages.append({"role": "user", "content": f"{conv} turn {turn}"})

            def call(proxy: Mitmdump) -> Any:
                client = anthropic_client(proxy, max_retries=2)
                return client.messages.create(
                    model="claude-sonnet-4-5", max_tokens=30, messages=messages,
                    extra_headers={"x-soak-conv": conv, "X-Claude-Code-Session-Id": conv})
            reply = self.turn(call)
            if reply is None:
                return
            messages.append({"role": "assistant", "content": reply.content[0].text})

    def report(self, log: list[dict[str, Any]], outputs: list[str], elapsed: float
               ) -> dict[str, Any]:
        served: dict[str, list[tuple[float, str]]] = defaultdict(list)
        breaks = 0
        for e in log:
            conv = (e.get("headers") or {}).get("x-soak-conv")
            if e.get("error_code") in BREAKS:
                breaks += 1
            if conv and e.get("status") == 200 and e.get("account"):
                served[conv].append((e["time"], e["account"]))
        moved = {m.group(1) for o in outputs for m in MOVED.finditer(o)}
        lost = lost_conversations(served, moved, self.restarted_at, outputs)
        return {
            "minutes": round(elapsed / 60, 2), "conversations": len(served),
            "turns_ok": self.turns_ok, "turns_failed": self.turns_failed,
            "upstream_requests": len(log),
            "faults_hit": sum(1 for e in log if e.get("fault")),
            "attempt_errors": dict(self.attempt_errors),
            "lost_pins": len(lost),
            "lost_pins_across_restart": sum(1 for x in lost if x["across_restart"]),
            "lost": lost,
            "moved_by_fallback": sum(1 for conv, visits in served.items()
                                     if len({a for _, a in visits}) > 1 and conv[-8:] in moved),
            "affinity_breaks": breaks, "pin_store": "sticky_store" if self.has_store else
            "none on this branch (pins are in memory: a restart forgets them)",
            "stop": stop_summary(outputs[0]) if len(outputs) > 1 else None,
            "rss_kib": self.rss,
            "addon_errors": sum(o.count("could not route") + o.count("Addon error")
                                + o.count("background job failed") for o in outputs),
            # mitmproxy itself prints CancelledError tracebacks for connections open at SIGINT
            "tracebacks_at_shutdown": sum(o.count("Traceback") for o in outputs),
            "logs": str(self.dir),
        }


def lost_conversations(served: dict[str, list[tuple[float, str]]], moved: set[str],
                       restarted_at: float | None, outputs: list[str]) -> list[dict[str, Any]]:
    """Conversations the fake served from more than one account without the proxy announcing a
    fallback move (its account was cooling down or revoked), each with why and its log lines.

    `served`: conversation -> (time, account) of every 200 the fake gave it.
    """
    lost = []
    for conv, visits in sorted(served.items()):
        accounts = [a for _, a in visits]
        if len(set(accounts)) < 2 or conv[-8:] in moved:
            continue
        path = [f"{a}{'' if restarted_at is None else ' (before restart)' if t < restarted_at
                     else ' (after restart)'}"
                for i, (t, a) in enumerate(visits) if i == 0 or a != visits[i - 1][1]]
        before = {a for t, a in visits if restarted_at is not None and t < restarted_at}
        after = {a for t, a in visits if restarted_at is not None and t >= restarted_at}
        across = len(before) == len(after) == 1 and before != after
        if across:
            why = (f"served by {before.pop()} before the restart and by {after.pop()} after it: "
                   "the restarted proxy did not restore its pin")
        else:
            first_change = next(i for i in range(1, len(visits))
                                if visits[i][1] != visits[i - 1][1])
            why = (f"changed from {visits[first_change - 1][1]} to {visits[first_change][1]} at "
                   f"its served turn {first_change + 1} without an announced move")
        lost.append({"conversation": conv, "why": why, "accounts": path,
                     "across_restart": across, "log": conversation_lines(conv, outputs)})
    return lost


def conversation_lines(conv: str, outputs: list[str], keep: int = 3) -> list[str]:
    """The proxy's log lines about a conversation: the last few of each proxy that saw it."""
    mark = f"session {conv[-8:]} "
    lines = []
    for i, out in enumerate(outputs):
        mine = [line.strip() for line in out.splitlines() if mark in line]
        lines += [f"proxy {i}: {line}" for line in mine[-keep:]]
    return lines


def stop_summary(output: str) -> dict[str, Any]:
    """What the restart's stop did in the first proxy's log, from the signal on."""
    at = output.find("stickyroute: stopping:")
    tail = output[at:] if at >= 0 else ""
    return {
        "seen": at >= 0,
        "refused": tail.count("-> 503: the proxy is stopping"),
        "stopped_by_shutdown": tail.count("stopped by shutdown"),
        "counted_against_accounts": [line.strip() for line in tail.splitlines() if any(
            m in line for m in ("connection error", "retried ", "| moved from "))],
    }

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args(argv)
    result = Soak(args.minutes, args.workers, args.seed).run()
    print(json.dumps(result, indent=1))
    ok = result["lost_pins"] == 0 and result["affinity_breaks"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
