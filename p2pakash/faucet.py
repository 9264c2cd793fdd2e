"""The testnet faucet: send a fixed amount to whoever asks, within per-address and daily limits.

Rules and invariants:
* ``Allowance`` is pure (time arrives as ``now``): an address gets at most
  ``per_address`` grants in any rolling ``window`` seconds (a day by default), and the
  faucet gives at most ``daily_cap`` uakt in total in the same window. A refusal says
  which limit and when the next grant is possible. A grant is recorded only once its tx
  was admitted, so a failed send costs the asker nothing.
* ``Faucet.give`` signs a ``Send`` with the faucet's key (sequence from the node's
  ``next_sequence``), submits it to the node API and waits (bounded) for its block. Sends
  are serialised by a lock, so concurrent requests never reuse a sequence.
* ``serve`` is a small HTTP JSON server (stdlib, one thread per request): ``GET /`` (the
  faucet's address, amount and limits), ``POST /request {"address": "akash1..."}`` -> 200
  ``{"address", "amount", "hash", "height"}``; 400 bad address or body, 429 over a limit,
  502 the node refused or is unreachable. Errors are ``{"error": "..."}``. Bodies are at
  most 4 KiB. Keys are never logged or returned.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs

from p2pakash import crypto
from p2pakash.client import ApiError, NodeClient, NodeUnreachable
from p2pakash.errors import P2PAkashError
from p2pakash.gossip.transport import parse_addr
from p2pakash.ledger.txs import Send, sign_tx

log = logging.getLogger(__name__)
DAY = 86_400.0
MAX_BODY = 4096


class FaucetRefused(P2PAkashError):
    """A request the faucet will not serve; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@attrs.define
class Allowance:
    amount: int
    per_address: int = 1
    daily_cap: int = 0  # 0: no total cap
    window: float = DAY
    grants: dict[str, deque[float]] = attrs.Factory(dict)
    given: deque[tuple[float, int]] = attrs.Factory(deque)

    def _expire(self, now: float) -> None:
        cutoff = now - self.window
        while self.given and self.given[0][0] <= cutoff:
            self.given.popleft()
        for address in list(self.grants):
            times = self.grants[address]
            while times and times[0] <= cutoff:
                times.popleft()
            if not times:
                del self.grants[address]

    def check(self, address: str, now: float) -> str | None:
        """None when ``address`` may receive ``amount`` now, else why not (one line)."""
        self._expire(now)
        times = self.grants.get(address, deque())
        if len(times) >= self.per_address:
            wait = times[0] + self.window - now
            return (f"{address} already received {len(times)} grant(s) in the last "
                    f"{self.window / 3600:g} h; try again in {wait / 3600:.1f} h")
        total = sum(amount for _, amount in self.given)
        if self.daily_cap and total + self.amount > self.daily_cap:
            wait = self.given[0][0] + self.window - now if self.given else 0.0
            return (f"the faucet gave its limit of {self.daily_cap} uakt in the last "
                    f"{self.window / 3600:g} h; try again in {wait / 3600:.1f} h")
        return None

    def record(self, address: str, now: float) -> None:
        self.grants.setdefault(address, deque()).append(now)
        self.given.append((now, self.amount))


class Faucet:
    def __init__(self, *, key: crypto.PrivateKey, client: NodeClient, allowance: Allowance,
                 wait_timeout: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self.key = key
        self.client = client
        self.allowance = allowance
        self.wait_timeout = wait_timeout
        self.clock = clock
        self.lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        a = self.allowance
        return {"address": self.key.address, "amount": a.amount, "per_address": a.per_address,
                "daily_cap": a.daily_cap, "window_s": a.window}

    def give(self, address: str) -> dict[str, Any]:
        try:
            crypto.address_bytes(address)
        except ValueError as exc:
            raise FaucetRefused(f"invalid address: {exc}") from None
        if address == self.key.address:
            raise FaucetRefused("the faucet does not pay itself")
        with self.lock:
            why = self.allowance.check(address, self.clock())
            if why is not None:
                raise FaucetRefused(why, 429)
            try:
                chain_id = str(self.client.status()["chain_id"])
                sequence = int(self.client.account(self.key.address)["next_sequence"])
                tx = sign_tx(self.key, chain_id, sequence=sequence,
                             msgs=(Send(to=address, amount=self.allowance.amount),))
                answer = self.client.submit(tx.encode())
            except (ApiError, NodeUnreachable) as exc:
                raise FaucetRefused(f"the node refused the send: {exc}", 502) from None
            self.allowance.record(address, self.clock())
        tx_hash = str(answer["hash"])
        log.info("faucet: %d uakt to %s (tx %s)", self.allowance.amount, address, tx_hash)
        try:
            found = self.client.wait_for_tx(tx_hash, timeout=self.wait_timeout)
        except P2PAkashError as exc:
            raise FaucetRefused(f"tx {tx_hash} sent but not committed: {exc}", 502) from None
        if found.get("code") not in (0, None):
            raise FaucetRefused(f"tx {tx_hash} failed in its block: {found.get('log')}", 502)
        return {"address": address, "amount": self.allowance.amount, "hash": tx_hash,
                "height": found.get("height")}


def make_handler(faucet: Faucet) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "p2pakash-faucet"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("faucet http: " + format, *args)

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = (json.dumps(body) + "\n").encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "":
                self._answer(200, faucet.info())
            else:
                self._answer(404, {"error": f"no such endpoint: {self.path[:100]}"})

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/request":
                self._answer(404, {"error": f"no such endpoint: {self.path[:100]}"})
                return
            try:
                length = int(self.headers.get("content-length") or 0)
                if not 0 <= length <= MAX_BODY:
                    raise FaucetRefused(f"body must be at most {MAX_BODY} bytes", 413)
                doc = json.loads(self.rfile.read(length) or b"{}")
                address = doc.get("address") if isinstance(doc, dict) else None
                if not isinstance(address, str):
                    raise FaucetRefused('body must be {"address": "akash1..."}')
                self._answer(200, faucet.give(address.strip()))
            except FaucetRefused as exc:
                self._answer(exc.status, {"error": str(exc)})
            except (ValueError, UnicodeDecodeError) as exc:
                self._answer(400, {"error": f"body is not JSON: {exc}"})

    return Handler


def make_server(faucet: Faucet, listen: str) -> ThreadingHTTPServer:
    """A bound (not yet serving) HTTP server; ``listen`` is ``host:port`` (port 0: any)."""
    host, port = parse_addr(listen, allow_zero_port=True)
    server = ThreadingHTTPServer((host, port), make_handler(faucet))
    server.daemon_threads = True
    return server
