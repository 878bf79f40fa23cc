"""The bench's workload: K conversations x T turns that grow like real coding sessions.

Deterministic (seeded): every scenario replays exactly the same conversations. A few shared
system prompts of 2-8 k tokens (several tools share one, as Codex sessions do), a unique first
user message per conversation, then each turn adds 200-2 000 tokens (the model's answer plus
the next user message / tool output). Half the conversations look like Codex CLI (`session-id`
header, `prompt_cache_key`, `store: false`), half like a plain SDK script (no id at all: the
proxy must derive one).
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

CHARS_PER_TOKEN = 4  # the fake upstream's token model
SYSTEM_TOKENS = (2_000, 4_000, 6_000, 8_000)
TURN_GROWTH = (200, 2_000)  # tokens added per turn: answer + next user message
MODEL = "gpt-5-codex"


def words(rng: random.Random, tokens: int) -> str:
    """Text of about `tokens` tokens, unique to this rng's stream (so caches never collide)."""
    out: list[str] = []
    size = 0
    while size < tokens * CHARS_PER_TOKEN:
        word = f"{rng.getrandbits(24):06x}"
        out.append(word)
        size += len(word) + 1
    return " ".join(out)


@dataclass(frozen=True)
class Conversation:
    index: int
    system: str
    first: str
    user_turns: tuple[str, ...]  # user text appended after each answer
    output_tokens: tuple[int, ...]  # answer length asked of the fake, per turn
    codex: bool  # Codex-shaped (session header + prompt_cache_key) or plain SDK
    thread_id: str

    @property
    def turns(self) -> int:
        return len(self.output_tokens)

    def headers(self, turn: int) -> dict[str, str]:
        h = {"content-type": "application/json", "accept": "text/event-stream",
             "x-fake-output-tokens": str(self.output_tokens[turn]),
             "x-bench-conv": str(self.index), "x-bench-turn": str(turn)}
        if self.codex:
            h["session-id"] = self.thread_id
        return h

    def body(self, history: list[dict[str, Any]]) -> bytes:
        body: dict[str, Any] = {"model": MODEL, "instructions": self.system, "input": history,
                                "stream": True}
        if self.codex:
            body.update(prompt_cache_key=self.thread_id, store=False,
                        reasoning={"effort": "medium"},
                        include=["reasoning.encrypted_content"])
        return json.dumps(body, separators=(",", ":")).encode()


def conversations(count: int, turns: int, seed: int = 7) -> list[Conversation]:
    rng = random.Random(seed)
    systems = [f"You are coding tool #{i}. " + words(rng, n)
               for i, n in enumerate(SYSTEM_TOKENS)]
    out = []
    for c in range(count):
        growth = [rng.randint(*TURN_GROWTH) for _ in range(turns)]
        answers = [max(20, g // 4) for g in growth]  # a quarter answer, the rest user/tool text
        out.append(Conversation(
            index=c,
            system=systems[c % len(systems)],
            first=f"Task {c}: " + words(rng, rng.randint(100, 400)),
            user_turns=tuple(words(rng, g - a) for g, a in zip(growth, answers, strict=True)),
            output_tokens=tuple(answers),
            codex=c % 2 == 0,
            thread_id=str(uuid.UUID(int=rng.getrandbits(128))),
        ))
    return out


def first_history(conv: Conversation) -> list[dict[str, Any]]:
    return [{"role": "user", "content": conv.first}]


def grow(history: list[dict[str, Any]], conv: Conversation, turn: int, answer: str) -> None:
    """Append the model's answer and the next user message, as a client resends them."""
    history.append({"role": "assistant", "content": answer})
    history.append({"role": "user", "content": conv.user_turns[turn]})
