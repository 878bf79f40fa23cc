"""Whether a request body must be parsed at all: byte searches on the decoded body, no JSON.

Parsing a 1 MB conversation costs more CPU than mitmproxy spends relaying it, and most
requests of a client that names its session in a header need nothing from the body. Must
never say "not needed" when a reader of the body would have found something: every check
errs towards parsing.
"""

from __future__ import annotations


def body_needed(raw: bytes, *, identify_from_body: bool, responses: bool,
                inject_cache_key: bool, inject_include: bool, place_new: bool = False) -> bool:
    """False only when neither identity, placement nor the Responses rewrite could use the body.

    `identify_from_body`: no session id came from the headers, so body fields or the derived
    key decide. `place_new`: a NEW conversation is placed where its prompt prefix is warm
    (prefix.prefix_of): read once per conversation, its later turns ride on the pin.
    `responses`: an OpenAI/ChatGPT Responses request, whose body may carry chain state and may
    get `prompt_cache_key` / `include` added. A field name that occurs anywhere
    in the body as a JSON string counts as present (conservative for the chain; for the two
    injected fields it means a body that mentions them is left as the client wrote it).
    """
    if identify_from_body or place_new:
        return True
    if not responses:
        return False  # Anthropic / Chat bodies: nothing reads them once the headers named it
    # Each search is a pass over the body (~0.2-0.3 ms per MB): as few as possible. find,
    # not `in`: `in` on bytes costs ~0.2 µs more per call, as much as a 1 KB body's pass.
    if raw.find(b'"previous_response_id"') != -1:
        return True  # chain state: a stored response only one account can read
    has_include = has_reasoning = False
    at = raw.find(b'"reasoning')  # a JSON string starts here (escaped quotes never match)
    while at != -1:
        if raw.startswith(b'"reasoning.encrypted_content"', at):
            has_include = True
        elif raw.startswith(b'"reasoning"', at):
            before = raw[max(0, at - 8):at]
            if before.endswith((b'"type":', b'"type": ')):
                return True  # a reasoning item: chain state (and maybe sealed content)
            has_reasoning = True
        at = raw.find(b'"reasoning', at + 10)
    # Clients put these after the input (Codex: last), so a search from the end is short.
    if inject_cache_key and raw.rfind(b'"prompt_cache_key"') == -1:
        return True
    return inject_include and has_reasoning and not has_include and raw.rfind(b'"store"') != -1
