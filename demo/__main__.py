"""Offline demo: 6 conversations x 4 turns over 3 accounts, with and without stickyroute.

Prints which account served each turn and how many prompt tokens came from that account's
cache. Everything runs on 127.0.0.1: the fake upstream, a real mitmdump, the openai SDK.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from devtools.harness import (
    REDIRECT_ADDON,
    STICKY_ADDON,
    Mitmdump,
    accounts_file,
    openai_client,
    redirect_options,
)
from fakeapi import FakeUpstream

KEYS = {f"sk-demo-{x}": f"acct-{x}" for x in "abc"}
CONVERSATIONS, TURNS = 6, 4
SYSTEM = "You are a careful coding assistant. " + "Follow the project's style guide. " * 180


def run(sticky: bool, workdir: Path) -> list[list[tuple[str, int, int]]]:
    """Per conversation, per turn: (account, prompt tokens, cached tokens)."""
    accounts = accounts_file(workdir / "accounts.yaml", KEYS)
    with FakeUpstream(keys=KEYS) as fake:
        options: dict[str, Any] = {"sticky_accounts": str(accounts), "sticky_enabled": sticky,
                                   **redirect_options(fake)}
        with Mitmdump([STICKY_ADDON, REDIRECT_ADDON], options,
                      confdir=workdir / f"mitm-{sticky}") as proxy:
            client = openai_client(proxy)
            histories = [[{"role": "user", "content": f"Task {c}: fix the failing test in "
                                                      f"module_{c}.py"}]
                         for c in range(CONVERSATIONS)]
            table: list[list[tuple[str, int, int]]] = [[] for _ in range(CONVERSATIONS)]
            for turn in range(TURNS):
                # Conversations take turns in a different order each round, as people do.
                for c in [(turn + i) % CONVERSATIONS for i in range(CONVERSATIONS)]:
                    history = histories[c]
                    r = client.responses.create(model="gpt-5", instructions=SYSTEM,
                                                input=history,
                                                extra_headers={"x-fake-output-tokens": "300"})
                    entry = fake.requests(response_id=r.id)[0]
                    cached = r.usage.input_tokens_details.cached_tokens
                    table[c].append((entry["account"], r.usage.input_tokens, cached))
                    history += [{"role": "assistant", "content": r.output_text},
                                {"role": "user", "content": f"Here is file_{turn}.py:\n"
                                                    + f"x{c} = compute(y)  # line\n" * 260}]
            return table


def print_table(title: str, table: list[list[tuple[str, int, int]]]) -> tuple[int, int]:
    print(f"\n{title}")
    header = "conversation | " + " | ".join(f"turn {t + 1}: account (cached/prompt)"
                                             for t in range(TURNS))
    print(header)
    print("-" * len(header))
    total = cached = 0
    for c, turns in enumerate(table):
        cells = [f"{acct} ({cache:>5}/{prompt:>5})" for acct, prompt, cache in turns]
        hops = len({acct for acct, _, _ in turns})
        print(f"conv {c + 1:<7} | " + " | ".join(f"{cell:<29}" for cell in cells)
              + ("" if hops == 1 else f"  <- {hops} accounts"))
        total += sum(p for _, p, _ in turns)
        cached += sum(k for _, _, k in turns)
    print(f"cached prompt tokens: {cached} of {total} ({100 * cached / total:.1f}%)")
    return cached, total


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="stickyroute-demo-") as tmp:
        on = print_table("With stickyroute (default settings):", run(True, Path(tmp)))
        off = print_table("Without pinning (sticky_enabled=false):", run(False, Path(tmp)))
    print(f"\nstickyroute served {100 * on[0] / on[1]:.1f}% of prompt tokens from cache, "
          f"versus {100 * off[0] / off[1]:.1f}% without pinning.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
