"""Test-only addon: append each finished flow's stickyroute metadata as a JSON line to a file.

Load it after addon/sticky.py, so the metadata already holds what the response taught us.
"""

from __future__ import annotations

import json

from mitmproxy import ctx, http


class MetaDump:
    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option("meta_dump", str, "", "File to append stickyroute metadata lines to.")

    def response(self, flow: http.HTTPFlow) -> None:
        self._dump(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._dump(flow)

    def _dump(self, flow: http.HTTPFlow) -> None:
        meta = flow.metadata.get("stickyroute")
        if ctx.options.meta_dump and meta:
            with open(ctx.options.meta_dump, "a") as f:
                f.write(json.dumps(meta, default=str) + "\n")


addons = [MetaDump()]
