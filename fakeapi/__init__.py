"""Fake OpenAI / Anthropic / ChatGPT-backend upstream with per-account state, for tests."""

from .faults import KINDS as FAULT_KINDS
from .upstream import FakeUpstream

__all__ = ["FAULT_KINDS", "FakeUpstream"]
