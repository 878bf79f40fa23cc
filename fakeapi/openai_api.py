"""OpenAI Responses (also the ChatGPT Codex backend) and Chat Completions endpoints."""

from __future__ import annotations

import time
from typing import Any

from .accounts import AccountState, StoredResponse
from .prompt import chat_prompt, responses_item_text, responses_prompt
from .wire import (
    Call,
    Reply,
    new_id,
    normalised_usage,
    openai_error,
    reply_text,
    sse,
    text_deltas,
)

ENCRYPTED = "reasoning.encrypted_content"


def openai_headers() -> dict[str, str]:
    return {
        "x-request-id": new_id("req_"),
        "openai-processing-ms": "12",
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-limit-tokens": "2000000",
        "x-ratelimit-remaining-tokens": "1999000",
        "x-ratelimit-reset-tokens": "30ms",
    }


# ---- Responses -----------------------------------------------------------------------


def responses(call: Call, acct: AccountState,
              connection: dict[str, StoredResponse] | None = None) -> Reply:
    """One Responses call. `connection`: the WebSocket's own responses, which it can chain
    from even with `store: false`; a `generate: false` request (a WebSocket prewarm) warms the
    account's cache and returns an id to chain from, with no output and no usage."""
    body = call.body
    chain = ""
    prev_id = body.get("previous_response_id")
    if prev_id:
        stored = acct.responses.get(str(prev_id)) or (connection or {}).get(str(prev_id))
        if stored is None:
            return openai_error(400, f"Previous response with id '{prev_id}' not found.",
                                "invalid_request_error", "previous_response_not_found",
                                "previous_response_id")
        chain = stored.chain_text
    bad_item = _unverifiable_reasoning(body.get("input"), acct)
    if bad_item is not None:
        return openai_error(400, f"The encrypted content for item {bad_item} could not be "
                            "verified.", "invalid_request_error", "invalid_encrypted_content")

    prompt = responses_prompt(body, chain)
    cached = acct.use_cache(prompt.text)
    generate = body.get("generate") is not False
    text = reply_text(call.output_tokens) if generate else ""
    output = _output_items(body, acct, text) if generate else []
    usage: dict[str, Any] | None = {
        "input_tokens": prompt.tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": call.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt.tokens + call.output_tokens,
    } if generate else None
    resp = _response_object(body, new_id("resp_"), output, usage)
    answer = responses_item_text({"role": "assistant", "content": text}) if generate else ""
    stored = StoredResponse(resp["id"], prompt.text, answer)
    if body.get("store", True) is not False:
        acct.responses[resp["id"]] = stored
    if connection is not None:
        connection[resp["id"]] = stored

    reply = Reply(200, resp, headers=openai_headers(), response_id=resp["id"],
                  usage=normalised_usage(prompt.tokens, cached, call.output_tokens, 0, usage)
                  if usage else None)
    if call.stream:
        reply.events = _responses_events(resp)
    return reply


def _unverifiable_reasoning(items: Any, acct: AccountState) -> str | None:
    """Id of the first input reasoning item whose encrypted_content this account didn't make."""
    if not isinstance(items, list):
        return None
    for item in items:
        if isinstance(item, dict) and item.get("type") == "reasoning" \
                and "encrypted_content" in item and not acct.verify(item["encrypted_content"]):
            return str(item.get("id") or "rs_unknown")
    return None


def _output_items(body: dict[str, Any], acct: AccountState, text: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if body.get("reasoning") is not None:
        reasoning: dict[str, Any] = {"id": new_id("rs_"), "type": "reasoning", "summary": []}
        if ENCRYPTED in (body.get("include") or []):
            reasoning["encrypted_content"] = acct.seal(reasoning["id"])
        items.append(reasoning)
    items.append({
        "id": new_id("msg_"), "type": "message", "status": "completed", "role": "assistant",
        "content": [_text_part(text)],
    })
    return items


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _response_object(body: dict[str, Any], resp_id: str, output: list[dict[str, Any]],
                     usage: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": resp_id, "object": "response", "created_at": int(time.time()),
        "status": "completed", "background": False, "error": None, "incomplete_details": None,
        "instructions": body.get("instructions"), "max_output_tokens": None,
        "model": body.get("model", "gpt-fake"), "output": output,
        "parallel_tool_calls": True, "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
        "service_tier": "default", "store": body.get("store", True) is not False,
        "temperature": 1.0, "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto", "tools": body.get("tools") or [], "top_p": 1.0,
        "truncation": "disabled", "usage": usage, "user": None, "metadata": {},
    }


def _responses_events(resp: dict[str, Any]) -> list[bytes]:
    seq = iter(range(1_000_000))

    def ev(kind: str, **data: Any) -> bytes:
        return sse(kind, {"type": kind, "sequence_number": next(seq), **data})

    start = {**resp, "status": "in_progress", "output": [], "usage": None}
    frames = [ev("response.created", response=start), ev("response.in_progress", response=start)]
    for index, item in enumerate(resp["output"]):
        frames.extend(_item_events(ev, index, item))
    frames.append(ev("response.completed", response=resp))
    return frames


def _item_events(ev: Any, index: int, item: dict[str, Any]) -> list[bytes]:
    if item["type"] != "message":
        added = {k: v for k, v in item.items() if k != "encrypted_content"}
        return [ev("response.output_item.added", output_index=index, item=added),
                ev("response.output_item.done", output_index=index, item=item)]
    text = item["content"][0]["text"]
    ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
    frames = [
        ev("response.output_item.added", output_index=index,
           item={**item, "status": "in_progress", "content": []}),
        ev("response.content_part.added", **ids, part=_text_part("")),
    ]
    frames += [ev("response.output_text.delta", **ids, delta=d, logprobs=[])
               for d in text_deltas(text)]
    frames += [
        ev("response.output_text.done", **ids, text=text, logprobs=[]),
        ev("response.content_part.done", **ids, part=_text_part(text)),
        ev("response.output_item.done", output_index=index, item=item),
    ]
    return frames


# ---- Chat Completions ----------------------------------------------------------------


def chat(call: Call, acct: AccountState) -> Reply:
    body = call.body
    prompt = chat_prompt(body)
    cached = acct.use_cache(prompt.text)
    text = reply_text(call.output_tokens)
    n = call.output_tokens
    usage = {
        "prompt_tokens": prompt.tokens, "completion_tokens": n,
        "total_tokens": prompt.tokens + n,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }
    head = {"id": new_id("chatcmpl-"), "created": int(time.time()),
            "model": body.get("model", "gpt-fake"), "service_tier": "default",
            "system_fingerprint": "fp_fake"}
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None,
                               "annotations": []}
    full = {**head, "object": "chat.completion", "usage": usage, "choices": [
        {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}]}
    reply = Reply(200, full, headers=openai_headers(), response_id=head["id"],
                  usage=normalised_usage(prompt.tokens, cached, n, 0, usage))
    if call.stream:
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        reply.events = _chat_events(head, text, usage if with_usage else None)
    return reply


def _chat_events(head: dict[str, Any], text: str, usage: dict[str, Any] | None) -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        data: dict[str, Any] = {**head, "object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if usage is not None:
            data["usage"] = None
        return sse(None, data)

    frames = [chunk({"role": "assistant", "content": "", "refusal": None})]
    frames += [chunk({"content": d}) for d in text_deltas(text)]
    frames.append(chunk({}, "stop"))
    if usage is not None:
        frames.append(sse(None, {**head, "object": "chat.completion.chunk", "choices": [],
                                 "usage": usage}))
    frames.append(sse(None, "[DONE]"))
    return frames
