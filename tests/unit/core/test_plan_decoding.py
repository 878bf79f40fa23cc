"""plan.read: a compressed body is decoded only when something reads it."""

import json

import pytest
import zstandard

from stickyroute.config.settings import Settings
from stickyroute.core.classify import Endpoint, Route
from stickyroute.core.plan import Incoming, read

CHAT = json.dumps({"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}).encode()
CODEX = json.dumps({"model": "gpt-5-codex", "input": [], "prompt_cache_key": "k",
                    "store": False, "reasoning": {"effort": "low"},
                    "include": ["reasoning.encrypted_content"]}).encode()


def incoming(endpoint: Endpoint, raw: bytes, headers: dict[str, str], encoding: str = ""
             ) -> Incoming:
    return Incoming(route=Route("openai", endpoint), headers=headers, raw=raw, client="c",
                    encoding=encoding)


def test_a_header_session_leaves_a_chat_body_encoded_and_unread() -> None:
    # Not even decoded: a corrupt (or bomb) zstd body would fail to decode, and nothing reads it.
    reading = read(incoming(Endpoint.CHAT, b"not zstd at all", {"session-id": "t"}, "zstd"),
                   Settings.defaults())
    assert reading.session is not None and reading.session.source == "header:session-id"
    assert reading.raw is None and reading.body is None


def test_without_a_header_session_a_compressed_body_is_decoded_and_names_it() -> None:
    sent = zstandard.ZstdCompressor().compress(CHAT)
    reading = read(incoming(Endpoint.CHAT, sent, {}, "zstd"), Settings.defaults())
    assert reading.raw == CHAT
    assert reading.body is not None and reading.session is not None
    assert reading.session.source == "derived"


@pytest.mark.parametrize("encoding", ["", "zstd"])
def test_a_responses_body_is_decoded_for_peek_but_not_parsed_when_complete(encoding: str
                                                                          ) -> None:
    sent = zstandard.ZstdCompressor().compress(CODEX) if encoding else CODEX
    reading = read(incoming(Endpoint.RESPONSES, sent, {"session-id": "t"}, encoding),
                   Settings.defaults())
    assert reading.raw == CODEX  # peek searched it
    assert reading.body is None  # and found nothing to read
