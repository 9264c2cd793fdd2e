"""The deployment version hash (Go ``manifest.Manifest.Version``).

Rule: sha256 over ``sdk.SortJSON(json.Marshal(manifest))``: the manifest's Akash JSON,
re-encoded compactly with object keys sorted, strings escaped as Go's encoding/json does
(``<``, ``>``, ``&``, U+2028 and U+2029 as ``\\u`` escapes; other non-ASCII kept as UTF-8).
The 32-byte digest goes in ``MsgCreateDeployment.hash``; providers recompute and compare.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
               "\u2028": "\\u2028", "\u2029": "\\u2029"}


def sorted_json(value: Any) -> bytes:
    """cosmos ``sdk.SortJSON``: compact, keys sorted, Go's string escaping."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in _GO_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text.encode("utf-8", "surrogatepass")


def manifest_version(manifest_json: list[dict[str, Any]]) -> bytes:
    """The 32-byte version hash of a manifest given in Akash JSON form."""
    return hashlib.sha256(sorted_json(manifest_json)).digest()
