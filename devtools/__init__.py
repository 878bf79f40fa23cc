"""Development tools: the real-process harness, test-only mitmproxy addons, fuzz and soak runs.

Used by tests/, bench/ and demo/; nothing here is part of the addon, and nothing here imports
from tests/.
"""
