"""Canonical prompt text of a request, for the fake's token counts and prompt cache.

Deterministic and provider-neutral: every message becomes one ``role: text`` line, so a
growing conversation (full history, or a previous-response chain) keeps its earlier text
as an exact prefix — which is what makes the per-account cache model work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

CHARS_PER_TOKEN = 4
# Claude Code puts a per-request billing line in its first system block; the cache ignores it.
BILLING_PREFIX = "x-anthropic-billing-header"


def count_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


@dataclass(frozen=True)
class Prompt:
    text: str
    marker_chars: int = 0  # Anthropic: end of the last segment carrying cache_control

    @property
    def tokens(self) -> int:
        return count_tokens(self.text)

    @property
    def has_marker(self) -> bool:
        return self.marker_chars > 0


def _line(role: str, text: str) -> str:
    return f"{role}: {text}\n"


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def content_text(content: Any) -> str:
    """Text of a message's content: a string or a list of typed parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_part_text(p) for p in content)
    return _dump(content)


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return _dump(part)
    if isinstance(part.get("text"), str):
        return part["text"]
    kind = part.get("type", "")
    if kind in ("image", "input_image", "image_url"):
        return "[image]"
    if kind == "tool_use":
        return _dump({"tool_use": part.get("name"), "input": part.get("input")})
    if kind == "tool_result":
        return content_text(part.get("content"))
    if kind == "thinking":
        return part.get("thinking", "")
    return _dump({k: v for k, v in part.items() if k != "cache_control"})


def _tools_line(tools: Any) -> str:
    return _line("tools", _dump(tools)) if tools else ""


# ---- OpenAI Responses ----------------------------------------------------------------


def responses_item_text(item: Any) -> str:
    if isinstance(item, str):
        return _line("user", item)
    if not isinstance(item, dict):
        return _line("item", _dump(item))
    kind = item.get("type", "message")
    if kind == "message" or ("role" in item and "type" not in item):
        return _line(item.get("role", "user"), content_text(item.get("content")))
    if kind == "reasoning":
        return ""  # opaque to the prompt text; verified separately
    if kind == "function_call":
        return _line("call", f"{item.get('name')}({item.get('arguments', '')})")
    if kind in ("function_call_output", "custom_tool_call_output"):
        return _line("tool", content_text(item.get("output")))
    return _line(kind, _dump({k: v for k, v in item.items() if k != "id"}))


def responses_prompt(body: dict[str, Any], chain_prefix: str = "") -> Prompt:
    parts = [chain_prefix, _tools_line(body.get("tools"))]
    if body.get("instructions"):
        parts.append(_line("system", str(body["instructions"])))
    inp = body.get("input")
    items = [inp] if isinstance(inp, str) else (inp or [])
    parts.extend(responses_item_text(i) for i in items)
    return Prompt("".join(parts))


# ---- OpenAI Chat Completions ---------------------------------------------------------


def chat_prompt(body: dict[str, Any]) -> Prompt:
    parts = [_tools_line(body.get("tools"))]
    for msg in body.get("messages") or []:
        if not isinstance(msg, dict):
            continue
        text = content_text(msg.get("content"))
        if msg.get("tool_calls"):
            text += _dump(msg["tool_calls"])
        parts.append(_line(msg.get("role", "user"), text))
    return Prompt("".join(parts))


# ---- Anthropic Messages --------------------------------------------------------------


def messages_prompt(body: dict[str, Any]) -> Prompt:
    text = ""
    marker = 0
    for tool in body.get("tools") or []:
        text += _line("tool", _dump({k: v for k, v in tool.items() if k != "cache_control"}))
        marker = len(text) if _marked(tool) else marker
    system = body.get("system")
    blocks = [{"type": "text", "text": system}] if isinstance(system, str) else (system or [])
    for block in blocks:
        if str(block.get("text", "")).startswith(BILLING_PREFIX):
            continue
        text += _line("system", _part_text(block))
        marker = len(text) if _marked(block) else marker
    for msg in body.get("messages") or []:
        content = msg.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for part in parts or []:
            text += _line(msg.get("role", "user"), _part_text(part))
            marker = len(text) if _marked(part) else marker
    return Prompt(text, marker)


def _marked(block: Any) -> bool:
    return isinstance(block, dict) and "cache_control" in block
