"""Shapes the fake answers with: replies, SSE frames and provider-style error bodies."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

FAMILIES = ("openai", "chatgpt", "anthropic")


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON body; ignored when events is set
    events: list[bytes] | None = None  # SSE frames, written and flushed one by one
    headers: dict[str, str] = field(default_factory=dict)
    response_id: str | None = None
    usage: dict[str, Any] | None = None
    error_code: str | None = None


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def sse(event: str | None, data: Any) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"{head}data: {payload}\n\n".encode()


def openai_error(status: int, message: str, type_: str, code: str | None,
                 param: str | None = None) -> Reply:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return Reply(status, body, error_code=code or type_)


def anthropic_error(status: int, type_: str, message: str) -> Reply:
    body = {"type": "error", "error": {"type": type_, "message": message},
            "request_id": new_id("req_")}
    return Reply(status, body, error_code=type_)


def unauthorized(family: str, detail: str) -> Reply:
    if family == "anthropic":
        return anthropic_error(401, "authentication_error", detail)
    return openai_error(401, detail, "invalid_request_error", "invalid_api_key")


def fault_reply(kind: str, family: str, retry_after: float | None) -> Reply:
    """The error a provider of this family answers for an injected fault kind."""
    after = retry_after if retry_after is not None else 1
    if kind == "429":
        reply = _rate_limited(family, after)
    elif kind == "quota":
        reply = _quota(family, after if retry_after is not None else 3600)
    elif kind == "401":
        reply = unauthorized(family, "Invalid API key (injected fault).")
    elif kind == "500":
        reply = (anthropic_error(500, "api_error", "Internal server error")
                 if family == "anthropic" else
                 openai_error(500, "The server had an error while processing your request.",
                              "server_error", "server_error"))
    elif kind == "529":
        reply = anthropic_error(529, "overloaded_error", "Overloaded")
    else:
        raise ValueError(f"fault kind {kind!r} has no error reply")
    if retry_after is not None:
        reply.headers["retry-after"] = _seconds(retry_after)
    return reply


def _rate_limited(family: str, after: float) -> Reply:
    if family == "anthropic":
        reply = anthropic_error(429, "rate_limit_error",
                                "This request would exceed the rate limit for your organization.")
        reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + after))
        reply.headers.update({
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": reset,
        })
    else:
        reply = openai_error(429, "Rate limit reached for requests (fake). Please try again in "
                             f"{_seconds(after)}s.", "requests", "rate_limit_exceeded")
        reply.headers.update({
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{_seconds(after)}s",
        })
    reply.headers["retry-after"] = _seconds(after)
    return reply


def _quota(family: str, after: float) -> Reply:
    if family == "chatgpt":
        seconds = int(after)
        body = {"error": {"type": "usage_limit_reached",
                          "message": "The usage limit has been reached",
                          "plan_type": "plus", "resets_at": int(time.time()) + seconds,
                          "resets_in_seconds": seconds}}
        return Reply(429, body, error_code="usage_limit_reached")
    if family == "anthropic":
        return anthropic_error(429, "rate_limit_error",
                               "You have reached your usage limit for this account (fake quota).")
    return openai_error(429, "You exceeded your current quota, please check your plan and billing "
                        "details.", "insufficient_quota", "insufficient_quota")


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass
class Call:
    """One authenticated API request, as the endpoint handlers see it."""

    body: dict[str, Any]
    family: str
    output_tokens: int
    stream: bool


_WORDS = ("the", "fox", "ran", "far", "and", "saw", "sun", "set")


def reply_text(tokens: int) -> str:
    """Deterministic text of exactly `tokens` tokens (4 characters each)."""
    return " ".join(_WORDS[i % len(_WORDS)] for i in range(tokens))


def text_deltas(text: str, words_per_delta: int = 4) -> list[str]:
    words = text.split(" ")
    out = []
    for i in range(0, len(words), words_per_delta):
        chunk = " ".join(words[i : i + words_per_delta])
        out.append(chunk if i + words_per_delta >= len(words) else chunk + " ")
    return [d for d in out if d]


def normalised_usage(input_tokens: int, cached: int, output: int, creation: int,
                     raw: dict[str, Any]) -> dict[str, Any]:
    """The log's provider-neutral usage: input_tokens is the whole prompt."""
    return {"input_tokens": input_tokens, "cached_tokens": cached, "output_tokens": output,
            "cache_creation_tokens": creation, "raw": raw}
