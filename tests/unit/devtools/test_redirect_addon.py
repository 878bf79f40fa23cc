"""Which hosts the test-only redirect addon sends to the fake upstream."""

import pytest

from devtools.redirect_addon import DEFAULT_HOSTS, parse_hosts, parse_target, wanted


@pytest.mark.parametrize("spec, host, sent", [
    (DEFAULT_HOSTS, "api.openai.com", True),
    (DEFAULT_HOSTS, "api.github.com", False),
    ("*", "api.github.com", True),
    ("*", "statsig.anthropic.com", True),
    (" API.OpenAI.com , ", "api.openai.com", True),
    ("", "api.openai.com", False),
])
def test_wanted(spec: str, host: str, sent: bool) -> None:
    assert wanted(parse_hosts(spec), host) is sent


def test_target() -> None:
    assert parse_target("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_target("") is None
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_target("nowhere")
