"""The node's HTTP JSON API as a plain ASGI application (served by hypercorn on trio).

Rules and invariants:
* Every response is JSON except ``GET /events`` (Server-Sent Events); every error body is
  ``{"error": "..."}`` (plus context fields for a refused tx), with 400 for bad input, 403
  for a refused write, 404 for an unknown path or object, 405 for a wrong method, 413 for
  an oversize body, 500 when the node itself failed (logged with its traceback).
* ``POST /txs`` admits a batch (``{"txs": [hex, ...]}``, or with ``content-type:
  application/cbor`` a CBOR array of the txs' byte strings; at most ``MAX_BATCH_TXS``) in
  order and answers 200 with the number admitted and a ``POST /tx``-style answer (plus its
  ``index``) for each refused tx: the HTTP cost is paid per batch. Admission stops at the
  first tx refused because the mempool is full: that one is listed and ``full_from`` is its
  index (the client resends from there); the later txs were not tried.
* Writes (every POST) are served only to loopback clients unless ``allow_remote_writes``;
  a request whose client address is unknown counts as remote.
* Bytes are lowercase hex; amounts are integers in uakt; times are ms since the epoch plus
  an ISO-8601 UTC rendering.
* Handlers only read the chain and ledger, and admit txs to the mempool, all between
  checkpoints on trio's thread: a block cannot be half-applied under a request.
* The SSE stream is bounded per subscriber (``EventHub``): a subscriber that falls behind
  is cut off with a final ``event: end`` rather than buffered without limit.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import ipaddress
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol

import attrs
import cbor2
import trio

from p2pakash import crypto
from p2pakash.api.txindex import TxIndex
from p2pakash.consensus.types import Block, Commit
from p2pakash.ledger import Ledger
from p2pakash.ledger.blocks import BlockResult
from p2pakash.ledger.txs import Event, TxResult, tx_hash
from p2pakash.mempool import AddResult, Mempool, Status

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Json = dict[str, Any]

MAX_BODY_OVERHEAD = 4096
MAX_BATCH_TXS = 10_000  # txs in one ``POST /txs``
MAX_BATCH_BODY = 16 * 1024 * 1024
_HASH = re.compile(r"^[0-9a-fA-F]{64}$")


# A mounted route set (e.g. ``tenant_routes.TenantRoutes``): called first for every HTTP
# request; True when it answered. It may raise HttpError before it starts a response.
Mount = Callable[["ApiApp", "Scope", "Receive", "Send"], Awaitable[bool]]


class ChainView(Protocol):
    """What the API reads from the chain service (``p2pakash.chain.ChainService``)."""

    @property
    def height(self) -> int: ...

    @property
    def latest_block_hash(self) -> bytes: ...

    @property
    def ledger(self) -> Ledger: ...

    def block(self, height: int) -> Block | None: ...

    def commit(self, height: int) -> Commit | None: ...


@attrs.frozen(kw_only=True)
class NodeInfo:
    chain_id: str
    node_id: str
    moniker: str
    pubkey: bytes  # the node key: a validator when it is in the active set


class HttpError(Exception):
    def __init__(self, status: int, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.body: Json = {"error": message, **extra}


# ---------------------------------------------------------------- rendering


def iso_ms(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_json(ev: Event) -> Json:
    return {"type": ev.type, "attributes": dict(ev.attrs)}


def result_json(result: TxResult) -> Json:
    return {"code": result.code, "log": result.log,
            "events": [event_json(e) for e in result.events]}


def commit_json(commit: Commit | None) -> Json | None:
    if commit is None:
        return None
    return {"height": commit.height, "round": commit.round, "block_hash": commit.block_hash.hex(),
            "signatures": len(commit.signatures),
            "signers": [s.validator.hex() for s in commit.signatures]}


def block_json(block: Block, commit: Commit | None) -> Json:
    h = block.header
    return {
        "height": h.height, "hash": block.hash().hex(),
        "header": {"chain_id": h.chain_id, "height": h.height, "time_ms": h.time_ms,
                   "time": iso_ms(h.time_ms), "last_block_hash": h.last_block_hash.hex(),
                   "last_commit_hash": h.last_commit_hash.hex(),
                   "validators_hash": h.validators_hash.hex(),
                   "next_validators_hash": h.next_validators_hash.hex(),
                   "app_hash": h.app_hash.hex(), "txs_hash": h.txs_hash.hex(),
                   "evidence_hash": h.evidence_hash.hex(), "proposer": h.proposer.hex()},
        "num_txs": len(block.txs), "txs": [tx_hash(raw).hex() for raw in block.txs],
        "evidence": len(block.evidence), "last_commit": commit_json(block.last_commit),
        "commit": commit_json(commit),
    }


def block_event_json(block: Block, result: BlockResult) -> Json:
    """The body of one ``event: block`` on the SSE stream."""
    return {
        "height": block.height, "hash": block.hash().hex(), "time_ms": block.header.time_ms,
        "num_txs": len(block.txs), "app_hash": result.app_hash.hex(),
        "txs": [{"hash": tx_hash(raw).hex(), **result_json(r)}
                for raw, r in zip(block.txs, result.tx_results, strict=True)],
        "events": [event_json(e) for e in result.events],
        "validator_updates": [{"pubkey": pk.hex(), "power": p}
                              for pk, p in result.validator_updates],
    }


def sse_frame(event: str, data: Json, event_id: int | None = None) -> bytes:
    head = f"event: {event}\n" + ("" if event_id is None else f"id: {event_id}\n")
    return (head + "data: " + json.dumps(data, separators=(",", ":")) + "\n\n").encode()


# ---------------------------------------------------------------- event hub


class EventHub:
    """Fans pre-rendered SSE frames out to subscribers, each with a bounded buffer."""

    def __init__(self, *, max_subscribers: int = 64, buffer: int = 256) -> None:
        self.max_subscribers = max_subscribers
        self.buffer = buffer
        self._subs: set[trio.MemorySendChannel[bytes]] = set()
        self.dropped = 0  # subscribers cut off for falling behind

    def __len__(self) -> int:
        return len(self._subs)

    @contextlib.contextmanager
    def subscription(self) -> Iterator[trio.MemoryReceiveChannel[bytes]]:
        if len(self._subs) >= self.max_subscribers:
            raise HttpError(503, f"too many event subscribers (limit {self.max_subscribers})")
        send, recv = trio.open_memory_channel[bytes](self.buffer)
        self._subs.add(send)
        try:
            with recv:
                yield recv
        finally:
            self._subs.discard(send)
            send.close()

    def publish(self, frame: bytes) -> None:
        for send in list(self._subs):
            try:
                send.send_nowait(frame)
            except trio.WouldBlock:
                self.dropped += 1
                self._subs.discard(send)
                send.close()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subs.discard(send)


# ---------------------------------------------------------------- the app


class ApiApp:
    """The ASGI callable. See the module docstring and docs/api.md for the endpoints."""

    def __init__(self, *, chain: ChainView, mempool: Mempool, info: NodeInfo,
                 txindex: TxIndex | None, hub: EventHub | None = None,
                 publish: Callable[[bytes], object] | None = None,
                 peers: Callable[[], int] = lambda: 0, allow_remote_writes: bool = False,
                 clock: Callable[[], float] = time.time, keepalive: float = 15.0,
                 mounts: Sequence[Mount] = ()) -> None:
        self.mounts = list(mounts)
        self.chain = chain
        self.mempool = mempool
        self.info = info
        self.txindex = txindex
        self.hub = hub if hub is not None else EventHub()
        self.publish = publish
        self.peers = peers
        self.allow_remote_writes = allow_remote_writes
        self.clock = clock
        self.keepalive = keepalive
        self.max_body = 2 * mempool.max_tx_bytes + MAX_BODY_OVERHEAD
        self.max_batch_body = max(self.max_body, MAX_BATCH_BODY)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets are not served; the server closes the connection
        method, path = scope["method"], scope["path"]
        try:
            for mount in self.mounts:
                if await mount(self, scope, receive, send):
                    return
            if path == "/events" and method == "GET":
                await self._events(receive, send)
                return
            status, body = await self._route(method, path, scope, receive)
        except HttpError as exc:
            status, body = exc.status, exc.body
        except Exception as exc:
            log.exception("API %s %s failed", method, path)
            status, body = 500, {"error": f"internal error: {type(exc).__name__}: {exc}"}
        await _send_json(send, status, body)

    async def _route(self, method: str, path: str, scope: Scope, receive: Receive
                     ) -> tuple[int, Json]:
        parts = [p for p in path.split("/") if p]
        route = parts[0] if parts else ""
        if route == "tx" and len(parts) == 1:
            _allow(method, path, "POST")
            self._check_write_allowed(scope)
            return self._submit(await read_body(receive, self.max_body))
        if route == "txs" and len(parts) == 1:
            _allow(method, path, "POST")
            self._check_write_allowed(scope)
            return self._submit_batch(await read_body(receive, self.max_batch_body),
                                      _is_cbor(scope))
        gets: dict[tuple[str, int], Callable[[list[str]], tuple[int, Json]]] = {
            ("status", 1): self._status, ("validators", 1): self._validators,
            ("block", 2): self._block, ("account", 2): self._account, ("tx", 2): self._tx,
            ("events", 1): self._status,  # reached only by a method other than GET
        }
        handler = gets.get((route, len(parts)))
        if handler is None:
            raise HttpError(404, f"no such endpoint: {path}")
        _allow(method, path, "GET")
        return handler(parts)

    def _check_write_allowed(self, scope: Scope) -> None:
        if self.allow_remote_writes:
            return
        client = scope.get("client")
        host = client[0] if client else None
        if host is None or not _is_loopback(host):
            raise HttpError(403, f"writes are accepted only from loopback clients, not from"
                                 f" {host or 'an unknown address'}"
                                 f" (set api.allow_remote_writes to allow them)")

    # ------------------------------------------------------------ GET handlers

    def _status(self, parts: list[str]) -> tuple[int, Json]:
        ledger = self.chain.ledger
        height = self.chain.height
        power = dict(ledger.validator_set_at(ledger.height() + 1)).get(self.info.pubkey, 0)
        latest = self.chain.latest_block_hash
        now = self.clock()
        return 200, {
            "chain_id": self.info.chain_id, "node_id": self.info.node_id,
            "moniker": self.info.moniker, "height": height,
            "latest_block_hash": latest.hex(), "latest_block_time_ms": ledger.time_ms(),
            "latest_block_time": iso_ms(ledger.time_ms()), "app_hash": ledger.app_hash().hex(),
            "time_ms": int(now * 1000), "time": iso_ms(int(now * 1000)),
            "peers": self.peers(), "validator": power > 0, "voting_power": power,
            "pubkey": self.info.pubkey.hex(), "address": crypto.address(self.info.pubkey),
            "mempool_size": self.mempool.size, "mempool_bytes": self.mempool.bytes,
        }

    def _block(self, parts: list[str]) -> tuple[int, Json]:
        height = self.chain.height if parts[1] == "latest" else _int_arg(parts[1], "height")
        block = self.chain.block(height) if height >= 1 else None
        if block is None:
            raise HttpError(404, f"block {height} not found (latest height is"
                                 f" {self.chain.height})")
        return 200, block_json(block, self.chain.commit(height))

    def _account(self, parts: list[str]) -> tuple[int, Json]:
        addr = parts[1]
        try:
            crypto.address_bytes(addr)
        except ValueError as exc:
            raise HttpError(400, f"invalid address: {exc}") from None
        acc = self.chain.ledger.account(addr)
        pending = self.mempool.pending_from(addr)
        return 200, {"address": addr, "balance": acc.balance, "sequence": acc.sequence,
                     "pending_txs": pending, "next_sequence": acc.sequence + pending}

    def _validators(self, parts: list[str]) -> tuple[int, Json]:
        ledger = self.chain.ledger
        height = ledger.height() + 1
        active = dict(ledger.validator_set_at(height))
        recs = sorted(ledger.store.validators(),
                      key=lambda r: (-active.get(r.pubkey, 0), -r.tokens, r.pubkey))
        rows = [{"pubkey": rec.pubkey.hex(), "address": crypto.address(rec.pubkey),
                 "moniker": rec.moniker, "power": active.get(rec.pubkey, 0),
                 "active": rec.pubkey in active, "tokens": rec.tokens, "jailed": rec.jailed,
                 "tombstoned": rec.tombstoned, "jailed_until_ms": rec.jailed_until_ms}
                for rec in recs]
        return 200, {"height": height, "total_power": sum(active.values()), "validators": rows}

    def _tx(self, parts: list[str]) -> tuple[int, Json]:
        text = parts[1]
        if not _HASH.fullmatch(text):
            raise HttpError(400, f"invalid tx hash {text[:80]!r}: expected 64 hex characters")
        h = bytes.fromhex(text)
        if self.txindex is None:
            if self.mempool.has(h):
                return 200, {"hash": text.lower(), "pending": True}
            raise HttpError(404, f"tx {text.lower()} is not pending here, and this node keeps"
                                 " no tx index ([api] tx_index = false): ask a node that does")
        rec = self.txindex.get(h)
        if rec is not None:
            body: Json = {"hash": text.lower(), "pending": False, "height": rec.height,
                          "index": rec.index}
            if rec.result is None:
                body.update(code=None, log="", events=[])
            else:
                body.update(result_json(rec.result))
            return 200, body
        if self.mempool.has(h):
            return 200, {"hash": text.lower(), "pending": True}
        raise HttpError(404, f"tx {text.lower()} not found")

    # ------------------------------------------------------------ POST /tx

    def _submit(self, body: bytes) -> tuple[int, Json]:
        doc = _json_object(body, '{"tx": "<hex of the encoded tx>"}')
        if not isinstance(doc.get("tx"), str):
            raise HttpError(400, 'expected a JSON object {"tx": "<hex of the encoded tx>"}')
        try:
            raw = bytes.fromhex(doc["tx"])
        except ValueError:
            raise HttpError(400, "field tx: not a hex string") from None
        answer = self._admit(raw)
        if answer["accepted"]:
            return 200, answer
        status = {Status.DUPLICATE.value: 409, Status.FULL.value: 503}.get(answer["status"], 400)
        return status, {"error": answer["reason"], **answer}

    def _submit_batch(self, body: bytes, cbor: bool = False) -> tuple[int, Json]:
        """``POST /txs``: admit each tx in order (see the module rules).

        The HTTP status is 200 whenever the request itself is well formed. The answer counts
        the admitted txs and lists each refused one (its ``index`` in the request plus the
        fields ``POST /tx`` answers), so the common case, all admitted, stays small."""
        raws = _cbor_txs(body) if cbor else self._json_txs(body)
        refused: list[Json] = []
        answer: Json = {"accepted": 0, "refused": refused}
        add, publish, accepted = self.mempool.add, self.publish, 0
        for i, raw in enumerate(raws):
            result = add(raw)
            if result.accepted:  # the common case: no answer built
                accepted += 1
                if publish is not None:
                    publish(raw)
                continue
            refused.append({"index": i, **_answer(result)})
            if result.status is Status.FULL:
                answer["full_from"] = i
                break
        answer["accepted"] = accepted
        return 200, answer

    def _json_txs(self, body: bytes) -> list[bytes]:
        usage = '{"txs": ["<hex of an encoded tx>", ...]}'
        doc = _json_object(body, usage)
        items = doc.get("txs")
        if not isinstance(items, list):
            raise HttpError(400, f"expected a JSON object {usage}")
        if len(items) > MAX_BATCH_TXS:
            raise HttpError(413, f"field txs: {len(items)} txs, limit {MAX_BATCH_TXS} per request")
        raws: list[bytes] = []
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise HttpError(400, f"field txs[{i}]: expected a hex string")
            try:
                raws.append(bytes.fromhex(item))
            except ValueError:
                raise HttpError(400, f"field txs[{i}]: not a hex string") from None
        return raws

    def _admit(self, raw: bytes) -> Json:
        result = self.mempool.add(raw)
        if result.accepted and self.publish is not None:
            self.publish(raw)
        return _answer(result)

    # ------------------------------------------------------------ SSE

    async def _events(self, receive: Receive, send: Send) -> None:
        with self.hub.subscription() as frames:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]})
            hello = f": connected to {self.info.moniker} at height {self.chain.height}\n\n"
            await send({"type": "http.response.body", "body": hello.encode(),
                        "more_body": True})
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
                await self._stream(frames, send)
                nursery.cancel_scope.cancel()
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream(self, frames: trio.MemoryReceiveChannel[bytes], send: Send) -> None:
        while True:
            frame = b": keepalive\n\n"
            with trio.move_on_after(self.keepalive):
                try:
                    frame = await frames.receive()
                except trio.EndOfChannel:
                    end = {"error": "event stream closed: the client fell behind or the node"
                                    " is stopping"}
                    await send({"type": "http.response.body", "body": sse_frame("end", end),
                                "more_body": True})
                    return
            await send({"type": "http.response.body", "body": frame, "more_body": True})


# ---------------------------------------------------------------- helpers


def _allow(method: str, path: str, *allowed: str) -> None:
    if method not in allowed:
        raise HttpError(405, f"method {method} not allowed on {path} (use {allowed[0]})")


def _int_arg(text: str, name: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise HttpError(400, f"invalid {name} {text[:40]!r}: expected a positive integer")
    return int(text)


def _is_loopback(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _answer(result: AddResult) -> Json:
    """The ``POST /tx`` answer for one admission result."""
    return {"hash": result.tx_hash.hex(), "accepted": result.accepted,
            "reason": result.reason, "status": result.status.value, "code": result.code}


def _is_cbor(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"application/cbor")
    return False


def _cbor_txs(body: bytes) -> list[bytes]:
    """A ``POST /txs`` CBOR body: one array of byte strings (each tx's wire bytes)."""
    usage = "a CBOR array of byte strings (each an encoded tx)"
    stream = io.BytesIO(body)
    try:
        items = cbor2.CBORDecoder(stream).decode()
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError,
            UnicodeError, EOFError) as exc:
        raise HttpError(400, f"request body is not CBOR: {exc}") from None
    if stream.tell() != len(body):
        raise HttpError(400, f"request body: {len(body) - stream.tell()} bytes after the array")
    if type(items) is not list:
        raise HttpError(400, f"expected {usage}, got {type(items).__name__}")
    if len(items) > MAX_BATCH_TXS:
        raise HttpError(413, f"{len(items)} txs, limit {MAX_BATCH_TXS} per request")
    for i, item in enumerate(items):
        if type(item) is not bytes:
            raise HttpError(400, f"item {i}: expected a byte string, got {type(item).__name__}")
    return items


def _json_object(body: bytes, usage: str) -> Json:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(400, f"request body is not JSON: {exc}") from None
    except RecursionError:
        raise HttpError(400, "request body is not JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise HttpError(400, f"expected a JSON object {usage}")
    return doc


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; HttpError 413 past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpError(400, "client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(send: Send, status: int, body: Json) -> None:
    data = (json.dumps(body, separators=(",", ":")) + "\n").encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
