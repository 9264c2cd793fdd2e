"""Process-wide tuning for a node process (never called from library code or tests).

CPython's cyclic garbage collector walks every tracked object of a generation when it
runs. A node keeps a large, long-lived heap (caches, mesh state, ledger records) and makes
many short-lived objects per message, so with the default thresholds (700, 10, 10) the
collector rescans the long-lived heap often: profiling the gossip benchmark showed a fifth
of all CPU in the collector. After start-up we freeze what exists (it is long-lived) and
raise the young-generation threshold.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 20_000


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
