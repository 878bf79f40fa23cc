"""The fake's request log entry: what arrived, who it was for, and what was answered."""

from __future__ import annotations

import time
from typing import Any

SESSION_HEADERS = (
    "x-sticky-session", "x-claude-code-session-id", "session-id", "session_id",
    "conversation_id", "thread-id", "x-session-id", "x-session-affinity", "x-opencode-session",
    "x-client-request-id",
)


def new_entry(method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "time": time.time(), "method": method, "path": path, "api": "other",
        "account": None, "status": None, "credential": "", "headers": headers,
        "session_headers": {h: headers[h] for h in SESSION_HEADERS if h in headers},
        "original_host": headers.get("x-fake-original-host"),
        "content_encoding": headers.get("content-encoding"), "body_size": 0,
        "model": None, "stream": False, "previous_response_id": None, "prompt_cache_key": None,
        "include": None, "response_id": None, "usage": None, "error_code": None, "fault": None,
        "body": None, "body_sha256": None, "metadata": None,
        "completed": False,  # the whole answer was written (False: dropped, client gone)
    }


def note_body(entry: dict[str, Any], body: Any) -> None:
    if not isinstance(body, dict):
        return
    entry.update(model=body.get("model"), stream=body.get("stream") is True,
                 previous_response_id=body.get("previous_response_id"),
                 prompt_cache_key=body.get("prompt_cache_key"), include=body.get("include"),
                 metadata=body.get("metadata"), body=body)
