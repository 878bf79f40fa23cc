"""Anthropic Messages endpoint (POST /v1/messages, `?beta=true` allowed)."""

from __future__ import annotations

from typing import Any

from .accounts import AccountState
from .prompt import count_tokens, messages_prompt
from .wire import Call, Reply, new_id, normalised_usage, reply_text, sse, text_deltas


def messages(call: Call, acct: AccountState) -> Reply:
    body = call.body
    prompt = messages_prompt(body)
    total = prompt.tokens
    cached = acct.use_cache(prompt.text)
    # Like the real API: what lies before the last cache marker and was not read from the
    # cache is written to it; only the rest counts as plain input.
    creation = max(0, min(count_tokens(prompt.text[: prompt.marker_chars]), total) - cached)
    uncached = total - cached - creation
    n = call.output_tokens
    usage = {"input_tokens": uncached, "cache_creation_input_tokens": creation,
             "cache_read_input_tokens": cached, "output_tokens": n, "service_tier": "standard"}
    msg = {
        "id": new_id("msg_"), "type": "message", "role": "assistant",
        "model": body.get("model", "claude-fake"),
        "content": [{"type": "text", "text": reply_text(n)}],
        "stop_reason": "end_turn", "stop_sequence": None, "usage": usage,
    }
    headers = {"request-id": new_id("req_"), "anthropic-organization-id": f"org-{acct.name}"}
    reply = Reply(200, msg, headers=headers, response_id=msg["id"],
                  usage=normalised_usage(total, cached, n, creation, usage))
    if call.stream:
        reply.events = _events(msg)
    return reply


def _events(msg: dict[str, Any]) -> list[bytes]:
    def ev(kind: str, **data: Any) -> bytes:
        return sse(kind, {"type": kind, **data})

    text = msg["content"][0]["text"]
    start = {**msg, "content": [], "stop_reason": None,
             "usage": {**msg["usage"], "output_tokens": 1}}
    frames = [
        ev("message_start", message=start),
        ev("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        ev("ping"),
    ]
    frames += [ev("content_block_delta", index=0, delta={"type": "text_delta", "text": d})
               for d in text_deltas(text)]
    frames += [
        ev("content_block_stop", index=0),
        ev("message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None},
           usage={"output_tokens": msg["usage"]["output_tokens"]}),
        ev("message_stop"),
    ]
    return frames


def count_tokens_api(call: Call, acct: AccountState) -> Reply:
    """POST /v1/messages/count_tokens (Claude Code calls it); touches no cache."""
    return Reply(200, {"input_tokens": messages_prompt(call.body).tokens})
