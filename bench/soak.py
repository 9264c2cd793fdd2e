#!/usr/bin/env python3
"""Soak: run a scenario for many virtual hours and sample memory once per virtual hour.

Each sample holds the process RSS (``/proc/self/status``), the number of objects the
garbage collector tracks, optionally tracemalloc's current size (``--tracemalloc``; it
slows the run about twofold), and the sizes of every long-lived collection of every node:
a walk from each node's services (gossip, pubsub, peers, chain, consensus, mempool,
provider, tenant) through the package's own objects records ``len()`` of each dict, set,
list, deque and memory channel buffer under ``Class.attribute`` (the largest instance
over all nodes). The verdict is "flat" when the RSS grew less than ``--rss-tolerance``
over the second half of the run and no collection's size in the last quarter exceeds
1.25x its largest size in the second quarter (plus 20): sizes plateaued.

Honest measurement notes:
* Every node keeps its block store, ledger, WAL and signing state in SQLite files under a
  temporary folder (``--memory-storage`` keeps them in memory instead, as the simulator does
  for nodes without a crash fault): a node's chain history lives on disk, not in RAM, so
  the in-memory variant grows by design and says nothing about leaks.
* ``--verify-cache N`` and ``--mempool-cache N`` shrink the shared signature cache and each
  mempool's recent-tx cache, so that a run of a day shows them full (at their defaults,
  100,000 and 10,000 entries, they would fill in about 34 and 45 virtual hours at the
  load of ``soak-24h.toml``).
  Caches still filling towards a declared cap are reported as notes, not as growth.
* SQLite's page cache is native memory outside Python's objects: each connection (two per
  node: block store and ledger) keeps up to 2 MiB by default (``PRAGMA cache_size`` -2000),
  filling slowly as the databases grow. ``--sqlite-cache-kib N`` sets every connection's
  cache to N KiB so a run shows it full early. Each sample also records ``malloc_mb``,
  glibc's bytes in use (``mallinfo2``: SQLite's caches and Python objects over 512 bytes),
  which is where that growth shows.
* The simulator's own report bookkeeping (per-height commit times and hashes, per-second
  height samples, the invariant checker's per-height tables, deployment records) grows
  with the run by design; the sampler trims it to the last heights after each sample
  (counted first) so it does not masquerade as a node's growth.

Benchmark only: never a test. ``tests/sim/test_soak.py`` runs the same sampler for a
short soak. Bounded by the scenario's ``wall_limit`` (or ``--wall-limit``).
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import ctypes.util
import gc
import inspect
import json
import logging
import sqlite3
import sys
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import attrs  # noqa: E402
import trio  # noqa: E402

from p2pakash.chain import SHARED_DECODED  # noqa: E402
from p2pakash.gossip.item_size import ItemSizer  # noqa: E402
from p2pakash.gossip.pubsub import ID_MEMO  # noqa: E402
from p2pakash.ledger import kv_sqlite  # noqa: E402
from p2pakash.ledger import state as ledger_state  # noqa: E402
from p2pakash.ledger import txs as ledger_txs  # noqa: E402
from p2pakash.provider.bidengine import BidEngine  # noqa: E402
from p2pakash.sim.determinism import deterministic_run  # noqa: E402
from p2pakash.sim.runner import Runner, SimNode, SimResult  # noqa: E402
from p2pakash.sim.scenario import Scenario, load_scenario  # noqa: E402

SMALL_CAP = 2_000  # --small-caps: state read, record decode and tx decode caches
SMALL_RUNS = 20  # --small-caps: deploys a tenant remembers
KEEP_HEIGHTS = 200  # simulator bookkeeping kept after each sample
MAX_ELEMENTS = 300  # elements of one container walked into (the rest are counted only)
CONTAINERS = (dict, set, frozenset, list, collections.deque)
FORGET_KEEP = inspect.signature(BidEngine.forget).parameters["keep"].default


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _ours(obj: object) -> bool:
    return type(obj).__module__.startswith("p2pakash")


def _frozen(obj: object) -> bool:
    setter = getattr(type(obj), "__setattr__", None)
    return getattr(setter, "__name__", "") == "_frozen_setattrs"


def _fields(obj: object) -> Iterable[tuple[str, object]]:
    seen: set[str] = set()
    for name, value in getattr(obj, "__dict__", {}).items():
        seen.add(name)
        yield name, value
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in seen and name != "__weakref__":
                seen.add(name)
                try:
                    yield name, getattr(obj, name)
                except AttributeError:
                    continue


def collection_sizes(roots: Iterable[object]) -> dict[str, int]:
    """``Class.attribute`` -> the largest ``len()`` over every instance reachable from
    ``roots`` through the package's own (mutable) objects."""
    sizes: dict[str, int] = {}
    visited: set[int] = set()
    stack = [r for r in roots if r is not None]

    def note(path: str, n: int) -> None:
        if n > sizes.get(path, -1):
            sizes[path] = n

    def visit_value(owner: str, name: str, value: object) -> None:
        path = f"{owner}.{name}"
        kind = type(value).__name__
        if isinstance(value, CONTAINERS):
            note(path, len(value))
            items: Iterable[object] = value.values() if isinstance(value, dict) else value
            for i, item in enumerate(items):
                if i >= MAX_ELEMENTS:
                    break
                for part in (item if isinstance(item, tuple) else (item,)):
                    if _ours(part) and not _frozen(part):
                        stack.append(part)
                    elif hasattr(part, "__self__") and _ours(part.__self__):  # bound method
                        stack.append(part.__self__)
                    elif isinstance(part, CONTAINERS):
                        note(f"{path}[]", len(part))
        elif kind in ("MemorySendChannel", "MemoryReceiveChannel"):
            state = getattr(value, "_state", None)
            note(f"{path}<channel>", len(getattr(state, "data", ())))
        elif hasattr(value, "__self__") and _ours(value.__self__):  # a bound method
            stack.append(value.__self__)
        elif _ours(value) and not _frozen(value):
            stack.append(value)

    while stack:
        obj = stack.pop()
        if id(obj) in visited:
            continue
        visited.add(id(obj))
        owner = type(obj).__name__
        if isinstance(obj, CONTAINERS):  # a collection subclass held directly
            note(f"{owner}", len(obj))
        for name, value in _fields(obj):
            visit_value(owner, name, value)
    return sizes


class SoakRunner(Runner):
    """The scenario's runner, with every node's storage on disk and, when asked, two caches
    shrunk so that they fill within the run (see the module notes)."""

    disk = True
    verify_cache: int | None = None
    mempool_cache: int | None = None
    small_caps = False  # also cut the state caches and the tenants' deploy table

    def _build_nodes(self, tmp: Path) -> None:
        super()._build_nodes(tmp)
        if self.small_caps:  # module constants read at each insert (bench only)
            ledger_state.DECODE_CACHE_SIZE = kv_sqlite.CACHE_SIZE = SMALL_CAP
            ledger_txs.DECODE_CACHE_SIZE = SMALL_CAP
        if self.verify_cache is not None:
            self.cache.capacity = self.verify_cache
        if self.disk:
            for node in self.nodes:
                if node.data_dir is None:
                    node.data_dir = tmp / node.name

    async def start_node(self, nursery: trio.Nursery, node: SimNode) -> None:
        await super().start_node(nursery, node)
        if self.mempool_cache is not None and node.mempool is not None:
            node.mempool.cache_size = self.mempool_cache
        if self.small_caps and node.tenant is not None:
            node.tenant.params = attrs.evolve(node.tenant.params, max_runs=SMALL_RUNS)


def caps(runner: Runner) -> dict[str, int]:
    """Declared capacities of the caches that fill slowly (``Class.attribute`` -> cap)."""
    out = {"VerifyCache._seen": runner.cache.capacity, "SqliteKV._cache": kv_sqlite.CACHE_SIZE,
           "BidEngine.seen": FORGET_KEEP,
           "ledger.state record decode cache": ledger_state.DECODE_CACHE_SIZE,
           "ledger.txs decode cache": ledger_txs.DECODE_CACHE_SIZE,
           "PubSub._ids": ID_MEMO,
           "DecodeMemo._items": SHARED_DECODED,  # the larger of the two memos
           "ItemSizer._by_id": ItemSizer().max_items}
    for node in runner.nodes:
        if node.mempool is not None:
            out["Mempool._cache"] = node.mempool.cache_size
            out["Mempool._txs"] = node.mempool.max_txs
        if node.tenant is not None:
            out["TenantService.runs"] = out["TenantService._by_digest"] = (
                node.tenant.params.max_runs)
    return out


class Sampler:
    def __init__(self, every: float, *, trace: bool) -> None:
        self.every = every
        self.trace = trace
        self.next_at = every
        self.rows: list[dict[str, Any]] = []
        self.caps: dict[str, int] = {}
        self.base: tracemalloc.Snapshot | None = None  # with --tracemalloc
        self.last: tracemalloc.Snapshot | None = None
        self.totals = {"deploys": 0, "leased": 0}
        self.census = False  # --census: count tracked objects by type at each sample
        self.types: list[collections.Counter[str]] = []
        self._cpu0 = time.process_time()
        self._wall0 = time.monotonic()

    def growth(self, top: int) -> list[str]:
        """The source lines whose live allocations grew most since the second sample."""
        if self.base is None or self.last is None:
            return []
        stats = self.last.compare_to(self.base, "lineno")[:top]
        return [f"{s.size_diff / 1024:+9.0f} KiB {s.count_diff:+8d} blocks  "
                f"{s.traceback[0].filename.split('site-packages/')[-1]}:{s.traceback[0].lineno}"
                for s in stats]

    def __call__(self, runner: Runner) -> None:
        now = runner.result.virtual_seconds
        if now + 1e-9 < self.next_at:
            return
        self.next_at += self.every
        self.caps = caps(runner)
        row = self.sample(runner, now)
        self.rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)  # progress, one line per sample
        trim(runner.result, self.totals)

    def sample(self, runner: Runner, now: float) -> dict[str, Any]:
        roots: list[object] = [runner.cache]
        for node in runner.nodes:
            roots += [node.gossip, node.chain, node.mempool, node.provider, node.tenant,
                      node.engine]
        gc.collect()
        row: dict[str, Any] = {
            "hour": round(now / 3600, 3), "virtual_s": round(now, 1),
            "height": max((n.height for n in runner.nodes), default=0),
            "rss_mb": round(rss_mb(), 1), "gc_objects": len(gc.get_objects()),
            "cpu_s": round(time.process_time() - self._cpu0, 1),
            "wall_s": round(time.monotonic() - self._wall0, 1),
            "deploys": self.totals["deploys"] + len(runner.result.market.deploys),
            "sizes": collection_sizes(roots),
        }
        row["malloc_mb"] = malloc_mb()
        row["sizes"]["ledger.state record decode cache"] = len(ledger_state._DECODED)
        row["sizes"]["ledger.txs decode cache"] = len(ledger_txs._DECODED)
        wal = [len(list((n.data_dir / "cs.wal").glob("*.wal"))) for n in runner.nodes
               if n.data_dir is not None and (n.data_dir / "cs.wal").is_dir()]
        if wal:
            row["sizes"]["WAL files per node"] = max(wal)
        if self.census:
            self.types.append(collections.Counter(type(o).__qualname__ for o in gc.get_objects()))
        if self.trace:
            row["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
            snap = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)])
            if len(self.rows) == 1:  # after the first sample: the warm-up is behind
                self.base = snap
            self.last = snap
        return row


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def malloc_mb() -> float | None:
    """glibc's bytes in use by malloc (arena + mmapped chunks), or None without glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    info = fn()
    return round((info.uordblks + info.hblkhd) / 2**20, 1)


def cap_sqlite_cache(kib: int) -> None:
    """Every SQLite connection opened from now on keeps at most ``kib`` KiB of page cache."""
    connect = sqlite3.connect

    def capped(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = connect(*args, **kwargs)
        db.execute(f"PRAGMA cache_size=-{int(kib)}")
        return db

    sqlite3.connect = capped  # type: ignore[assignment]


def trim(result: SimResult, totals: dict[str, int]) -> None:
    """Drop the simulator's report bookkeeping of old heights (counted in ``totals``)."""
    heights = sorted(result.block_hashes)
    for h in heights[:-KEEP_HEIGHTS]:
        for table in (result.commit_times, result.block_times_ms, result.block_hashes):
            table.pop(h, None)
    if result.checker is not None:
        for table in (result.checker.blocks, result.checker.app_hashes):  # type: ignore[assignment]
            for h in sorted(table)[:-KEEP_HEIGHTS]:
                del table[h]
    del result.samples[:-KEEP_HEIGHTS]
    done = [d for d in result.market.deploys if d.outcome]
    finished = done[:-KEEP_HEIGHTS]
    if finished:
        drop = {id(d) for d in finished}
        totals["deploys"] += len(finished)
        totals["leased"] += sum(1 for d in finished if d.outcome == "leased")
        result.market.deploys[:] = [d for d in result.market.deploys if id(d) not in drop]
    del result.market.utilisation[:-KEEP_HEIGHTS]


def verdict(rows: list[dict[str, Any]], caps: dict[str, int], *, rss_tolerance: float
            ) -> tuple[bool, list[str], list[str]]:
    """(flat?, reasons it is not, notes): RSS over the second half, collections per
    quarter; a collection still filling towards its declared cap is a note, not a reason."""
    if len(rows) < 4:
        return False, ["fewer than 4 samples"], []
    notes: list[str] = []
    n = len(rows)
    half, q2, q4 = rows[n // 2 - 1:], rows[n // 4: n // 2], rows[3 * n // 4:]
    reasons = []
    growth = (half[-1]["rss_mb"] - half[0]["rss_mb"]) / half[0]["rss_mb"]
    if growth > rss_tolerance:
        reasons.append(f"RSS grew {growth:.1%} over the second half "
                       f"({half[0]['rss_mb']} -> {half[-1]['rss_mb']} MB)")
    for path in sorted({p for r in q4 for p in r["sizes"]}):
        before = max((r["sizes"].get(path, 0) for r in q2), default=0)
        after = max(r["sizes"].get(path, 0) for r in q4)
        if after > 1.25 * before + 20:
            line = f"{path} grew: {before} (2nd quarter) -> {after} (last quarter)"
            if path in caps and after <= caps[path]:
                notes.append(f"{line}, filling towards its cap {caps[path]}")
            else:
                reasons.append(line)
    return not reasons, reasons, notes


def table(rows: list[dict[str, Any]], top: int) -> str:
    last = rows[-1]["sizes"] if rows else {}
    paths = sorted(last, key=lambda p: -last[p])[:top]
    lines = [f"{'hour':>5} {'height':>6} {'RSS MB':>7} {'malloc MB':>9} {'gc objs':>8} "
             f"{'CPU s':>7} {'deploys':>7}"
             + ("" if "traced_mb" not in (rows or [{}])[0] else " traced MB")]
    for r in rows:
        line = (f"{r['hour']:>5g} {r['height']:>6} {r['rss_mb']:>7} "
                f"{r.get('malloc_mb')!s:>9} {r['gc_objects']:>8} {r['cpu_s']:>7} "
                f"{r['deploys']:>7}")
        if "traced_mb" in r:
            line += f" {r['traced_mb']:>9}"
        lines.append(line)
    lines.append("")
    lines.append(f"largest collections (max len over nodes) per sample, top {top}:")
    for p in paths:
        lines.append(f"  {p:<48} " + " ".join(str(r["sizes"].get(p, 0)) for r in rows))
    return "\n".join(lines)


def run(scenario: Path | Scenario, *, until: float | None = None, every: float = 3600.0,
        wall_limit: float | None = None, disk: bool = True, trace: bool = False,
        verify_cache: int | None = None, mempool_cache: int | None = None,
        small_caps: bool = False, census: bool = False) -> tuple[SimResult, Sampler]:
    """Run ``scenario`` to ``until`` (default: its duration), sampling every ``every``
    virtual seconds (the last sample at ``until`` itself)."""
    sc = load_scenario(scenario) if isinstance(scenario, Path) else scenario
    sampler = Sampler(every, trace=trace)
    end = (sc.duration if until is None else until) + 1.5  # the monitor samples at ``end``
    runner = SoakRunner(sc, until=end, wall_limit=wall_limit, progress=sampler)
    runner.disk = disk
    runner.verify_cache, runner.mempool_cache = verify_cache, mempool_cache
    runner.small_caps = small_caps
    sampler.census = census
    if trace:
        tracemalloc.start()
    result = deterministic_run(runner.main, seed=runner.seed)
    return result, sampler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default=str(ROOT / "simulations" / "soak-24h.toml"))
    ap.add_argument("--until", type=float, default=0.0, help="virtual seconds (default: "
                                                             "the scenario's duration)")
    ap.add_argument("--every", type=float, default=3600.0, help="virtual seconds per sample")
    ap.add_argument("--wall-limit", type=float, default=0.0, help="default: the scenario's")
    ap.add_argument("--memory-storage", action="store_true",
                    help="keep storage in memory for nodes without a crash fault")
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument("--census", action="store_true", help="count objects by type per sample")
    ap.add_argument("--small-caps", action="store_true",
                    help=f"cut the state read, record and tx decode caches to {SMALL_CAP} and each "
                         f"tenant's deploy table to {SMALL_RUNS}, so they fill within hours")
    ap.add_argument("--verify-cache", type=int, default=0,
                    help="the shared VerifyCache's capacity (default: the runner's)")
    ap.add_argument("--mempool-cache", type=int, default=0,
                    help="each mempool's recent-tx cache size (default: the mempool's)")
    ap.add_argument("--sqlite-cache-kib", type=int, default=0,
                    help="every SQLite connection's page cache in KiB (default: SQLite's 2 MiB)")
    ap.add_argument("--rss-tolerance", type=float, default=0.05)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--json-out", default="")
    args = ap.parse_args()
    logging.getLogger("p2pakash").setLevel(logging.ERROR)
    if args.sqlite_cache_kib:
        cap_sqlite_cache(args.sqlite_cache_kib)
    result, sampler = run(Path(args.scenario), until=args.until or None, every=args.every,
                          wall_limit=args.wall_limit or None, disk=not args.memory_storage,
                          trace=args.tracemalloc, verify_cache=args.verify_cache or None,
                          mempool_cache=args.mempool_cache or None,
                          small_caps=args.small_caps, census=args.census)
    rows = sampler.rows
    print(table(rows, args.top))
    flat, reasons, notes = verdict(rows, sampler.caps, rss_tolerance=args.rss_tolerance)
    checker = result.checker
    violations = [v.line() for v in checker.violations] if checker else []
    print(f"\nstopped by: {result.stopped_by}; virtual {result.virtual_seconds:.0f} s; "
          f"violations: {len(violations)}; deployments: {rows[-1]['deploys'] if rows else 0}")
    for line in violations[:5]:
        print("  " + line)
    if len(sampler.types) >= 2:
        diff = sampler.types[-1].copy()
        diff.subtract(sampler.types[1])
        print("\nobjects by type, grown most since the second sample:")
        for name, n in diff.most_common(15):
            print(f"  {n:+8d}  {name}")
    grown = sampler.growth(15)
    if grown:
        print("\ntracemalloc: live allocations grown most since the second sample")
        for line in grown:
            print("  " + line)
    print("verdict: " + ("flat" if flat else "NOT flat"))
    for line in reasons + notes:
        print("  " + line)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"rows": rows, "flat": flat,
                                                   "reasons": reasons, "notes": notes,
                                                   "caps": sampler.caps}, indent=1) + "\n")
    sys.exit(0 if flat and not violations else 1)


if __name__ == "__main__":
    main()
