#!/usr/bin/env python3
"""One validator's per-tx work in one process, stage by stage (CPU microseconds per tx).

What a validator of ``bench/chain_bench.py`` does with each ``Send`` tx, without the
network: admission of ``TxBatch`` gossip through the ``txs`` topic validator (batch
decode, tx decode, state check, ed25519 once), block execution (``apply_block`` on a
``SqliteKV`` in a temp dir), the mempool update and recheck of what stays pending, and the
tx index. Same tx shape as the chain bench (3,000 accounts interleaved, one recipient,
fee 0), the node's VerifyCache and GC thresholds. Each round admits ``--pending`` +
``--block`` txs, commits a block of the oldest ``--block`` and rechecks the rest, so
every tx is rechecked about ``pending / block`` times, as under load.

Prints one row per stage (min over ``--repeat`` rounds after a warm-up round) and the
total; ``--json`` for the raw numbers. Benchmark only, never a test; process CPU time,
so it can be compared on a busy machine (give the load average).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import cbor2

from p2pakash import crypto, runtime, wire
from p2pakash.api.txindex import TxIndex
from p2pakash.crypto import NodeID, VerifyCache
from p2pakash.ledger.app import Ledger
from p2pakash.ledger.blocks import BlockInput
from p2pakash.ledger.genesis import GenesisAccount, GenesisDoc, GenesisValidator
from p2pakash.ledger.kv_sqlite import SqliteKV
from p2pakash.ledger.txs import Send, TxBatch, sign_tx
from p2pakash.mempool import Mempool, tx_validator

CHAIN = "stages-bench"


def make_txs(accounts: int, count: int, cache: Path | None = None
             ) -> tuple[list[crypto.PrivateKey], list[bytes]]:
    """Signed txs, account ``k % accounts`` at sequence ``k // accounts`` (``cache``: a
    file that keeps them between runs, so a run under valgrind does not sign)."""
    keys = [crypto.PrivateKey.from_seed(i.to_bytes(4, "big") * 8) for i in range(accounts)]
    if cache is not None and cache.exists():
        stored = cbor2.loads(cache.read_bytes())
        if stored[0] == accounts and len(stored[1]) >= count:
            return keys, list(stored[1][:count])
    dest = crypto.PrivateKey.from_seed(b"\x07" * 32).address
    txs = []
    for k in range(count):
        a, seq = k % accounts, k // accounts
        txs.append(sign_tx(keys[a], CHAIN, sequence=seq, msgs=(Send(to=dest, amount=1),))
                   .encode())
    if cache is not None:
        cache.write_bytes(cbor2.dumps([accounts, txs]))
    return keys, txs


def run(args: argparse.Namespace) -> dict[str, Any]:
    runtime.tune_gc()
    rounds = args.repeat + 1
    per_round = args.block
    total = per_round * rounds + args.pending
    keys, txs = make_txs(args.accounts, total, args.tx_cache)
    validator = crypto.PrivateKey.from_seed(b"\x01" * 32)
    genesis = GenesisDoc(chain_id=CHAIN, genesis_time_ms=1_000, accounts=tuple(
        GenesisAccount(address=k.address, balance=10**12) for k in keys),
        validators=(GenesisValidator(pubkey=validator.public, stake=10**9),))
    with tempfile.TemporaryDirectory() as tmp:
        kv = SqliteKV(Path(tmp) / "state.db")
        Ledger.init_genesis(kv, genesis)
        cache = VerifyCache()
        ledger = Ledger(kv, verify=cache.verify)
        mempool = Mempool.for_ledger(ledger, verify=cache.verify, max_txs=10**6,
                                     max_bytes=2**40)
        gossip = tx_validator(mempool, NodeID("self"))
        index = TxIndex(Path(tmp) / "txindex.db")
        stages: dict[str, list[float]] = {"admission": [], "execution": [], "recheck": [],
                                          "tx index": []}

        def timed(name: str, start: float) -> None:
            stages[name].append((time.process_time() - start) / per_round * 1e6)

        def admit(batch: list[bytes]) -> None:
            for i in range(0, len(batch), args.gossip_batch):
                data = wire.encode(TxBatch(txs=tuple(batch[i:i + args.gossip_batch])))
                gossip(NodeID("peer"), "txs", data)

        # Preload the pending backlog (not measured).
        admit(txs[:args.pending])
        fed = args.pending
        for height in range(1, rounds + 1):
            t0 = time.process_time()
            admit(txs[fed:fed + per_round])
            timed("admission", t0)
            fed += per_round
            block = mempool.reap(max_txs=per_round)
            t0 = time.process_time()
            result = ledger.apply_block(BlockInput(
                height=height, time_ms=1_000 + height * 1_000, proposer=validator.public,
                txs=tuple(block)))
            timed("execution", t0)
            bad = [r for r in result.tx_results if r.code]
            if bad:
                raise SystemExit(f"block {height}: {len(bad)} txs failed: {bad[0].log}")
            t0 = time.process_time()
            mempool.update(height, block)
            timed("recheck", t0)
            if mempool.last_dropped:
                raise SystemExit(f"recheck dropped {len(mempool.last_dropped)} txs")
            t0 = time.process_time()
            index.add_block(height, block, result.tx_results)
            timed("tx index", t0)
        index.close()
        kv.close()
    best = {name: min(values[1:]) for name, values in stages.items()}
    best["total"] = sum(best.values())
    return {"block": args.block, "pending": args.pending, "rounds": args.repeat,
            "loadavg": os.getloadavg()[0], "gc": gc.get_threshold(), "us_per_tx": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--block", type=int, default=2500, help="txs per block")
    parser.add_argument("--pending", type=int, default=2500,
                        help="txs left pending at each update (rechecked)")
    parser.add_argument("--gossip-batch", type=int, default=100, help="txs per TxBatch")
    parser.add_argument("--repeat", type=int, default=5, help="measured rounds")
    parser.add_argument("--tx-cache", type=Path, default=None,
                        help="keep the signed txs in this file between runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = run(args)
    if args.json:
        print(json.dumps(out))
        return
    print(f"block {out['block']}, pending {out['pending']}, load {out['loadavg']:.1f},"
          f" gc {out['gc']}: CPU us per tx (min of {out['rounds']} rounds)")
    for name, value in out["us_per_tx"].items():
        print(f"  {name:<10} {value:7.1f}")


if __name__ == "__main__":
    main()
