"""Process-wide tuning for a node process (never called from library code or tests).

CPython's cyclic garbage collector walks every tracked object of a generation when it
runs. A node keeps a large, long-lived heap (caches, mesh state, ledger records) and makes
many short-lived objects per message, so with the default thresholds (700, 10, 10) the
collector rescans the long-lived heap often: profiling the gossip benchmark showed a fifth
of all CPU in the collector. After start-up we freeze what exists (it is long-lived) and
raise the thresholds to (200,000, 10, 10): under the chain benchmark's load the collector
took 0.51 s per 30,000 txs at the defaults, 0.31 s at (50,000, 20, 20) (what the simulator
uses) and 0.20 s at (200,000, 10, 10), whose young collections are rarer and leave fewer
survivors to the middle generation; a full collection still comes after the same 20 million
net allocations, and the longest pause seen was ~130 ms (docs/benchmarks.md).
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 200_000
OLDER_THRESHOLD = 10  # collections of the younger generation before an older one runs


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
