"""Helpers for API tests: a real one-process chain (Ledger + signed blocks and commits, no
consensus), a raw ASGI caller, and a urllib client run in a thread."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from typing import Any

import trio

from p2pakash.consensus.types import Block, Commit, CommitSig, VoteType, build_block, sign_vote
from p2pakash.ledger import BlockInput, BlockResult, Ledger
from p2pakash.mempool import Mempool
from tests.ledger.helpers import CHAIN, VALS, new_ledger

GENESIS_S = 1_000.0  # the helpers' genesis time (1_000_000 ms)


class LocalChain:
    """Blocks of a real ledger, each with a commit signed by every genesis validator.

    Implements what the API reads from ``p2pakash.chain.ChainService``."""

    def __init__(self, ledger: Ledger | None = None) -> None:
        self.ledger = ledger or new_ledger()
        self.blocks: list[Block] = []
        self.commits: dict[int, Commit] = {}
        self.results: list[BlockResult] = []
        self._subs: list[trio.MemorySendChannel[tuple[Block, BlockResult]]] = []

    @property
    def height(self) -> int:
        return len(self.blocks)

    @property
    def latest_block_hash(self) -> bytes:
        return self.blocks[-1].hash() if self.blocks else b""

    def block(self, height: int) -> Block | None:
        return self.blocks[height - 1] if 1 <= height <= len(self.blocks) else None

    def commit(self, height: int) -> Commit | None:
        return self.commits.get(height)

    def subscribe_blocks(self) -> trio.MemoryReceiveChannel[tuple[Block, BlockResult]]:
        send, recv = trio.open_memory_channel[tuple[Block, BlockResult]](1000)
        self._subs.append(send)
        return recv

    def make_block(self, txs: list[bytes] | tuple[bytes, ...] = (), *, notify: bool = True
                   ) -> tuple[Block, BlockResult]:
        height = self.height + 1
        time_ms = self.ledger.time_ms() + 1000
        vhash = hashlib.sha256(b"".join(pk for pk, _ in self.ledger.validators())).digest()
        last = self.commits.get(height - 1)
        block = build_block(chain_id=CHAIN, height=height, time_ms=time_ms,
                            last_block_hash=self.latest_block_hash, validators_hash=vhash,
                            next_validators_hash=vhash, app_hash=self.ledger.app_hash(),
                            proposer=VALS[0].public, txs=txs, last_commit=last)
        signers = tuple(pk for pk, _ in self.ledger.validator_set_at(height))
        result = self.ledger.apply_block(BlockInput(
            height=height, time_ms=time_ms, proposer=VALS[0].public, txs=tuple(txs),
            signers=signers if last is not None else ()))
        votes = [sign_vote(k, CHAIN, type=VoteType.PRECOMMIT, height=height, round=0,
                           block_hash=block.hash(), timestamp_ms=time_ms) for k in VALS]
        self.commits[height] = Commit(height=height, round=0, block_hash=block.hash(),
                                      signatures=tuple(CommitSig(validator=v.validator,
                                                                 timestamp_ms=v.timestamp_ms,
                                                                 signature=v.signature)
                                                       for v in votes))
        self.blocks.append(block)
        self.results.append(result)
        if notify:
            for send in self._subs:
                send.send_nowait((block, result))
        return block, result

    def commit_pool(self, pool: Mempool) -> tuple[Block, BlockResult]:
        """One block of everything pending, then the mempool's update (what the node does)."""
        txs = pool.reap()
        out = self.make_block(txs)
        pool.update(self.height, txs)
        return out

    async def produce(self, pool: Mempool, *, interval: float = 0.05,
                      max_blocks: int = 1000) -> None:
        """A block whenever txs are pending, checked every ``interval`` s (bounded)."""
        for _ in range(max_blocks):
            await trio.sleep(interval)
            if pool.size:
                self.commit_pool(pool)


# ---------------------------------------------------------------- clients


async def asgi_call(app: Any, method: str, path: str, body: bytes = b"",
                    client: tuple[str, int] | None = ("127.0.0.1", 40000)
                    ) -> tuple[int, dict[str, Any]]:
    """One request straight into an ASGI app (no server): (status, JSON body)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "headers": [], "client": client,
             "server": ("127.0.0.1", 26680)}
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    data = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(data)


def http(url: str, method: str = "GET", doc: object = None, *,
         timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    """A blocking urllib request (run it with trio.to_thread.run_sync): (status, JSON)."""
    data = None if doc is None else json.dumps(doc).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def ahttp(url: str, method: str = "GET", doc: object = None) -> tuple[int, dict[str, Any]]:
    return await trio.to_thread.run_sync(lambda: http(url, method, doc))


__all__ = ["CHAIN", "GENESIS_S", "VALS", "LocalChain", "ahttp", "asgi_call", "http"]
