"""Step 5: what a response says: its id, reasoning item ids, token usage, lost-state errors.

One Observer per response (or per WebSocket turn). It is fed SSE events, WebSocket frames or a
whole JSON body of one of the three APIs and keeps what it learned in plain fields. It never
raises on what a provider (or anything pretending to be one) sends: unknown shapes are ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

# Error text that means a conversation's server-side state is not on this account.
_BREAKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"previous_response_not_found|previous response with id .{0,120}not found"),
     "previous_response_not_found"),
    (re.compile(r"invalid_encrypted_content|encrypted content.{0,200}"
                r"(could not be (verified|decrypted)|invalid)"), "invalid_encrypted_content"),
    (re.compile(r"no conversation found"), "conversation_not_found"),
)
MAX_ERROR_TEXT = 64 * 1024
# Streamed pieces of text (nearly every event of a long answer) and the events that repeat a
# finished piece of text: nothing to learn from them (no id, usage, reasoning item or error).
# Skipping them by name, unparsed, cut the observer's CPU on SSE by most of its cost (just bench);
# the SSE parser drops them before decoding their data (SseParser(skip=...)). Chat Completions
# chunks have no name: Observer.ignorable tells a text-only chunk by a byte search.
SKIPPED_EVENTS = frozenset({
    "response.output_text.delta", "response.function_call_arguments.delta",
    "response.reasoning_summary_text.delta", "response.reasoning_text.delta",
    "response.custom_tool_call_input.delta", "response.refusal.delta",
    "response.audio.delta", "response.audio.transcript.delta",
    "response.output_text.done", "response.content_part.added", "response.content_part.done",
    "response.function_call_arguments.done", "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.added", "response.reasoning_summary_part.done",
    "response.reasoning_text.done", "response.refusal.done",
    "content_block_delta", "content_block_start", "content_block_stop", "ping",
})
MAX_REASONING_IDS = 256


@dataclass(slots=True)
class Usage:
    input: int = 0  # the whole prompt, cached part included
    cached: int = 0  # read from the prompt cache
    output: int = 0
    cache_write: int = 0  # written to the cache (Anthropic bills it apart)
    reasoning: int = 0  # part of output

    @property
    def cache_ratio(self) -> float | None:
        return self.cached / self.input if self.input else None


@dataclass(slots=True)
class Observer:
    endpoint: str  # classify.Endpoint value: responses | chat | messages | other
    response_id: str | None = None
    model: str | None = None
    reasoning_ids: list[str] = field(default_factory=list)
    usage: Usage | None = None
    completed: bool = False  # the provider said the response is finished
    error: str | None = None  # provider error code or type
    affinity_break: str | None = None
    rate_limits: dict[str, Any] | None = None  # Codex's codex.rate_limits event (windows.py)

    # ---- inputs ----------------------------------------------------------------------
    def event(self, name: str, data: str) -> None:
        """One SSE event (its `event:` name may be empty; the JSON carries a type too)."""
        if data == "[DONE]":
            self.completed = True
            return
        if name in SKIPPED_EVENTS:
            return
        obj = _loads(data)
        if obj is None:
            return
        if name == "error" or obj.get("type") in ("error", "response.failed"):
            self._check_break(data)
        self.message(obj)

    def ignorable(self, data: bytes) -> bool:
        """Whether an unnamed SSE event's raw data can teach nothing: a Chat Completions chunk
        that only carries text, once the id and model are known (the SSE parser asks before
        decoding it; a chunk it does not ask about is parsed as usual)."""
        return self.endpoint == "chat" and bool(self.response_id and self.model) and (
            _chat_text_only(data))

    def message(self, obj: dict[str, Any]) -> None:
        """One event object (an SSE event's data or a WebSocket frame from the server)."""
        kind = obj.get("type")
        if kind == "codex.rate_limits":
            self.rate_limits = obj
            return
        if self.endpoint == "messages":
            self._anthropic_event(kind, obj)
        elif self.endpoint == "chat":
            self._chat(obj)
        elif isinstance(kind, str) and kind.startswith("response."):
            self._responses_event(kind, obj)
        elif kind == "error":
            err = _dict(obj.get("error")) or obj
            self.error = _str(err.get("code")) or _str(err.get("type")) or "error"

    def body(self, obj: dict[str, Any]) -> None:
        """A whole (non-streamed) JSON response body."""
        if isinstance(obj.get("error"), dict):
            err = obj["error"]
            self.error = _str(err.get("code")) or _str(err.get("type")) or "error"
            return
        if self.endpoint == "messages":
            self._anthropic_message(obj)
        elif self.endpoint == "chat":
            self._chat(obj)
        else:
            self._response_object(obj)
        self.completed = True

    def error_text(self, text: str) -> None:
        """The body of an error answer, as text (whatever its shape)."""
        self._check_break(text)
        if self.error is None:
            obj = _loads(text)
            if obj is not None:
                self.body(obj)
                self.completed = False

    # ---- per API ---------------------------------------------------------------------
    def _responses_event(self, kind: str, obj: dict[str, Any]) -> None:
        if kind in ("response.created", "response.in_progress", "response.completed",
                    "response.incomplete", "response.failed"):
            resp = obj.get("response")
            if isinstance(resp, dict):
                self._response_object(resp)
            if kind != "response.created" and kind != "response.in_progress":
                self.completed = True
        elif kind in ("response.output_item.added", "response.output_item.done"):
            self._item(obj.get("item"))

    def _response_object(self, resp: dict[str, Any]) -> None:
        self.response_id = _str(resp.get("id")) or self.response_id
        self.model = _str(resp.get("model")) or self.model
        output = resp.get("output")
        if isinstance(output, list):
            for item in output:
                self._item(item)
        usage = resp.get("usage")
        if isinstance(usage, dict):
            self.usage = _openai_usage(usage, "input", "output")
        err = resp.get("error")
        if isinstance(err, dict):
            self.error = _str(err.get("code")) or "error"

    def _item(self, item: Any) -> None:
        if isinstance(item, dict) and item.get("type") == "reasoning":
            rid = _str(item.get("id"))
            if rid and rid not in self.reasoning_ids and len(
                    self.reasoning_ids) < MAX_REASONING_IDS:
                self.reasoning_ids.append(rid)

    def _chat(self, obj: dict[str, Any]) -> None:
        self.response_id = _str(obj.get("id")) or self.response_id
        self.model = _str(obj.get("model")) or self.model
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.usage = _openai_usage(usage, "prompt", "completion")
        choices = obj.get("choices")
        if isinstance(choices, list) and any(
                isinstance(c, dict) and c.get("finish_reason") for c in choices):
            self.completed = True

    def _anthropic_event(self, kind: Any, obj: dict[str, Any]) -> None:
        if kind == "message_start":
            msg = obj.get("message")
            if isinstance(msg, dict):
                self._anthropic_message(msg)
        elif kind == "message_delta":
            # Cumulative counts: output always, input/cache ones only on newer API versions.
            self._anthropic_usage(obj.get("usage"))
        elif kind == "message_stop":
            self.completed = True
        elif kind == "error":
            err = _dict(obj.get("error"))
            self.error = _str(err.get("type")) or "error"

    def _anthropic_message(self, msg: dict[str, Any]) -> None:
        self.response_id = _str(msg.get("id")) or self.response_id
        self.model = _str(msg.get("model")) or self.model
        self._anthropic_usage(msg.get("usage"))

    def _anthropic_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        u = self.usage or Usage()
        plain = u.input - u.cached - u.cache_write  # input not read from nor written to cache
        if "input_tokens" in usage:
            plain = _int(usage.get("input_tokens"))
        if "cache_read_input_tokens" in usage:
            u.cached = _int(usage.get("cache_read_input_tokens"))
        if "cache_creation_input_tokens" in usage:
            u.cache_write = _int(usage.get("cache_creation_input_tokens"))
        u.input = max(0, plain) + u.cached + u.cache_write
        if "output_tokens" in usage:
            u.output = _int(usage.get("output_tokens"))
        self.usage = u

    def _check_break(self, text: str) -> None:
        low = text[:MAX_ERROR_TEXT].lower()
        for pattern, label in _BREAKS:
            if pattern.search(low):
                self.affinity_break = label
                return


def _chat_text_only(data: bytes) -> bool:
    """Every choice of this Chat Completions chunk unfinished, and no usage in it.

    Byte searches, no parsing. A quote inside a JSON string is escaped, so these spellings only
    match real keys; another spelling (spaces after the colon) means "parse it".
    """
    if data.endswith(_USUAL_TAIL):  # OpenAI's own chunk: one search left (a duplicate
        return data.count(b'"finish_reason"') == 1  # "usage" key parses as its last: null)
    unfinished = data.count(b'"finish_reason":null')
    return (unfinished > 0 and unfinished == data.count(b'"finish_reason"')
            and data.count(b'"usage"') == data.count(b'"usage":null'))


_USUAL_TAIL = b'"finish_reason":null}],"usage":null}'  # (stream_options.include_usage)


def _loads(data: str | bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _openai_usage(usage: dict[str, Any], inp: str, out: str) -> Usage:
    """OpenAI's usage object: the Responses API says input/output, Chat Completions
    prompt/completion (`<inp>_tokens`, `<inp>_tokens_details.cached_tokens`, ...)."""
    details_in, details_out = (_dict(usage.get(f"{inp}_tokens_details")),
                               _dict(usage.get(f"{out}_tokens_details")))
    return Usage(input=_int(usage.get(f"{inp}_tokens")),
                 cached=_int(details_in.get("cached_tokens")),
                 output=_int(usage.get(f"{out}_tokens")),
                 reasoning=_int(details_out.get("reasoning_tokens")))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
