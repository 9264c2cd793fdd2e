"""The tenant's HTTP endpoints, mounted on the node API (``ApiApp(mounts=[TenantRoutes(...)])``).

Rules and invariants:
* Paths: ``POST /deployments`` (streams NDJSON), ``GET /deployments``,
  ``GET /deployments/{dseq}``, ``GET /deployments/{dseq}/bids``,
  ``POST /deployments/{dseq}/deposit``, ``POST /deployments/{dseq}/close``, ``GET /leases``,
  ``GET /leases/{lease}/status``, ``GET /leases/{lease}/logs?service=S&tail=N``,
  ``POST /leases/{lease}/close``; ``{lease}`` is ``DSEQ.GSEQ.OSEQ``. Anything else is left
  to the app (``__call__`` returns False).
* ``POST /deployments`` takes ``{"sdl": text, "source"?, "deposit"?, "select"?, "wait"?,
  "denom_rates"?: {"uact": "0.25"}}``. Input refused before the order is published (SDL,
  deposit, balance, plugin) is a plain 400 JSON error; once published, the answer is 200
  ``application/x-ndjson``: one JSON event per line as it happens, ending with ``done``.
  A client that goes away stops the stream, not the deployment.
* Every POST obeys the API's write rule (loopback only unless allowed); errors are
  ``{"error": ...}`` like the rest of the API. Handlers read the ledger between
  checkpoints on trio's thread.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from fractions import Fraction
from typing import Any

import trio

from p2pakash.api.app import ApiApp, HttpError, Json, Receive, Scope, Send, read_body
from p2pakash.errors import PluginError, SDLError
from p2pakash.market import ledger_market as lm
from p2pakash.market.chain_types import LeaseState
from p2pakash.market.orders import DeploymentID, LeaseID
from p2pakash.provider.messages import MAX_LOG_TAIL
from p2pakash.tenant import plan, render
from p2pakash.tenant.plan import TenantError
from p2pakash.tenant.service import TenantService

log = logging.getLogger(__name__)

MAX_BODY = 2 * 1024 * 1024
STREAM_BUFFER = 4096


class TenantRoutes:
    def __init__(self, tenant: TenantService) -> None:
        self.tenant = tenant

    async def __call__(self, app: ApiApp, scope: Scope, receive: Receive, send: Send) -> bool:
        method, path = scope["method"], scope["path"]
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] not in ("deployments", "leases"):
            return False
        if method == "POST":
            app._check_write_allowed(scope)
        if parts == ["deployments"] and method == "POST":
            await self._create(await read_body(receive, MAX_BODY), send)
            return True
        status, body = await self._route(method, parts, scope, receive)
        await _send_json(send, status, body)
        return True

    async def _route(self, method: str, parts: list[str], scope: Scope, receive: Receive
                     ) -> tuple[int, Json]:
        t = self.tenant
        store, height = t.chain.ledger.store, t.chain.height
        n = len(parts)
        if parts[0] == "deployments":
            if n == 1:
                _allow(method, "GET", "POST")
                return 200, {"owner": t.address, "deployments": self._deployments()}
            dseq = _int(parts[1], "dseq")
            if n == 2:
                _allow(method, "GET")
                return 200, self._deployment(dseq)
            if n == 3 and parts[2] == "bids":
                _allow(method, "GET")
                return 200, self._bids(dseq)
            if n == 3 and parts[2] in ("deposit", "close"):
                _allow(method, "POST")
                did = DeploymentID(owner=t.address, dseq=dseq)
                if lm.get_deployment(store, did) is None:
                    raise HttpError(404, f"deployment {dseq} of {t.address} not found on chain")
                if parts[2] == "deposit":
                    doc = _json(await read_body(receive, MAX_BODY))
                    amount = doc.get("amount")
                    if type(amount) is not int or amount <= 0:
                        raise HttpError(400, "field amount: expected a positive integer (uakt)")
                    return await self._tx(lm.Deposit(deployment=did, amount=amount), dseq)
                return await self._tx(lm.CloseDeployment(deployment=did), dseq)
        else:
            if n == 1:
                _allow(method, "GET")
                return 200, {"owner": t.address,
                             "leases": render.owner_leases(store, t.address, height)}
            if n == 3 and parts[2] in ("status", "logs", "close"):
                rec = self._lease(parts[1])
                if parts[2] == "close":
                    _allow(method, "POST")
                    return await self._tx(lm.CloseLease(lease=rec.id), rec.id.dseq)
                _allow(method, "GET")
                if parts[2] == "status":
                    return 200, await self._status(rec)
                query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
                return 200, await self._logs(rec.id, query)
        raise HttpError(404, f"no such endpoint: {scope['path']}")

    # ------------------------------------------------------------ create (streamed)

    async def _create(self, raw: bytes, send: Send) -> None:
        doc = _json(raw)
        text = doc.get("sdl")
        if not isinstance(text, str):
            raise HttpError(400, 'expected {"sdl": "<SDL text>", ...}')
        deposit, select, wait = doc.get("deposit"), doc.get("select"), doc.get("wait")
        if deposit is not None and (type(deposit) is not int or deposit <= 0):
            raise HttpError(400, "field deposit: expected a positive integer (uakt)")
        if select is not None and not isinstance(select, str):
            raise HttpError(400, "field select: expected a string")
        if wait is not None and (not isinstance(wait, int | float) or isinstance(wait, bool)):
            raise HttpError(400, "field wait: expected a number of seconds")
        source = doc.get("source")
        rates: dict[str, Fraction] = {}
        for denom, value in (doc.get("denom_rates") or {}).items():
            try:
                rates.update([plan.parse_rate(f"{denom}={value}")])
            except TenantError as exc:
                raise HttpError(400, str(exc)) from None
        events_in, events_out = trio.open_memory_channel[Json](STREAM_BUFFER)
        failure: list[Exception] = []

        def emit(event: Json) -> None:
            try:
                events_in.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                log.warning("deploy progress event dropped: %s", event.get("event"))

        async def deploy() -> None:
            try:
                await self.tenant.deploy(
                    text, source=source if isinstance(source, str) else "<sdl>",
                    deposit=deposit, select=select, wait_s=None if wait is None else float(wait),
                    denom_rates=rates, emit=emit)
            except (SDLError, TenantError, PluginError) as exc:
                failure.append(exc)
            finally:
                events_in.close()

        first: Json | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(deploy)
            async with events_out:
                try:
                    first = await events_out.receive()
                except trio.EndOfChannel:
                    first = None
                if first is not None:
                    await _stream(send, first, events_out)
        if first is None:
            raise HttpError(400, str(failure[0]) if failure else "deployment ended without "
                                                                 "any event")

    # ------------------------------------------------------------ reads

    def _deployments(self) -> list[Json]:
        t = self.tenant
        deps = {d.id.dseq: d for d in lm.owner_deployments(t.chain.ledger.store, t.address)}
        return [self._entry(dseq, deps.get(dseq)) for dseq in sorted(deps.keys() | t.runs.keys())]

    def _deployment(self, dseq: int) -> Json:
        t = self.tenant
        return self._entry(dseq, lm.get_deployment(t.chain.ledger.store,
                                                   DeploymentID(owner=t.address, dseq=dseq)))

    def _entry(self, dseq: int, dep: lm.DeploymentRec | None) -> Json:
        """A deployment as on chain (if it is), with this node's deploy progress (if any)."""
        t = self.tenant
        run = t.runs.get(dseq)
        if dep is not None:
            entry = render.deployment_json(t.chain.ledger.store, dep, t.chain.height)
        elif run is not None:
            entry = {"dseq": dseq, "owner": t.address, "state": run.status, "leases": []}
        else:
            raise HttpError(404, f"deployment {dseq} of {t.address} not found")
        if run is not None:
            entry.update(bids=len(run.bids), declines=len(run.declines), error=run.error,
                         progress=run.status)
        return entry

    def _bids(self, dseq: int) -> Json:
        run = self.tenant.runs.get(dseq)
        if run is None:
            raise HttpError(404, f"no bids recorded for deployment {dseq} on this node (bids "
                                 f"travel off chain; only deployments created here are known)")
        return {"dseq": dseq, "status": run.status, "error": run.error,
                "bids": [plan.bid_json(b, 0) for _, b in sorted(run.bids.items())],
                "declines": [plan.decline_json(d, 0) for _, d in sorted(run.declines.items())],
                "refused": list(run.refused)}

    def _lease(self, ref: str) -> lm.LeaseRec:
        try:
            dseq, gseq, oseq = plan.parse_lease_ref(urllib.parse.unquote(ref))
        except TenantError as exc:
            raise HttpError(400, str(exc)) from None
        t = self.tenant
        rec = render.find_lease(t.chain.ledger.store, t.address, dseq, gseq, oseq)
        if rec is None:
            raise HttpError(404, f"lease {dseq}.{gseq}.{oseq} of {t.address} not found")
        return rec

    async def _status(self, rec: lm.LeaseRec) -> Json:
        body: Json = {"lease": render.lease_json(rec), "provider_status": None,
                      "provider_error": ""}
        if rec.state is not LeaseState.ACTIVE:
            return body
        try:
            status = await self.tenant.lease_status(rec.id)
        except TenantError as exc:
            body["provider_error"] = str(exc)
            return body
        body["provider_status"] = {
            "state": status.state, "error": status.error,
            "services": [{"service": r.service, "replica": r.replica, "state": r.state,
                          "ports": {k: v for k, v in r.ports}, "error": r.error}
                         for r in status.services]}
        return body

    async def _logs(self, lid: LeaseID, query: dict[str, list[str]]) -> Json:
        service = query.get("service", [""])[0]
        tail_text = query.get("tail", ["100"])[0]
        if (not (tail_text.isascii() and tail_text.isdigit()) or len(tail_text) > 9
                or not 1 <= int(tail_text) <= MAX_LOG_TAIL):
            raise HttpError(400, f"tail must be 1..{MAX_LOG_TAIL}, got {tail_text[:20]!r}")
        try:
            logs = await self.tenant.lease_logs(lid, service=service, tail=int(tail_text))
        except TenantError as exc:
            raise HttpError(502, str(exc)) from None
        return {"lease": plan.lease_ref(lid), "error": logs.error,
                "lines": [{"service": e.service, "replica": e.replica, "stream": e.stream,
                           "line": e.line} for e in logs.lines]}

    async def _tx(self, msg: object, dseq: int) -> tuple[int, Json]:
        try:
            height, result = await self.tenant.submit((msg,))
        except TenantError as exc:
            raise HttpError(400, str(exc)) from None
        store = self.tenant.chain.ledger.store
        dep = lm.get_deployment(store, DeploymentID(owner=self.tenant.address, dseq=dseq))
        return 200, {"height": height, "log": result.log,
                     "events": [{"type": e.type, "attributes": dict(e.attrs)}
                                for e in result.events],
                     "deployment": None if dep is None else render.deployment_json(
                         store, dep, self.tenant.chain.height)}


# ---------------------------------------------------------------- helpers


async def _stream(send: Send, first: Json, events: trio.MemoryReceiveChannel[Json]) -> None:
    """Send ``first`` and every later event as NDJSON; keep draining if the client left."""
    alive = True

    async def line(event: Json) -> None:
        nonlocal alive
        if not alive:
            return
        try:
            await send({"type": "http.response.body", "more_body": True,
                        "body": (json.dumps(event, separators=(",", ":")) + "\n").encode()})
        except Exception as exc:  # the ASGI server's "client went away", whatever its type
            log.info("deploy stream client went away: %s", exc)
            alive = False

    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/x-ndjson"), (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no")]})
    await line(first)
    async for event in events:
        await line(event)
    if alive:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise HttpError(405, f"method {method} not allowed here (use {' or '.join(allowed)})")


def _int(text: str, name: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) < 1:
        raise HttpError(400, f"invalid {name} {text[:40]!r}: expected a positive integer")
    return int(text)


def _json(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(400, f"request body is not JSON: {exc}") from None
    except RecursionError:
        raise HttpError(400, "request body is not JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise HttpError(400, "request body must be a JSON object")
    return doc


async def _send_json(send: Send, status: int, body: Json) -> None:
    data = (json.dumps(body, indent=1) + "\n").encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data, "more_body": False})
