"""The message-handler registry: message type -> handler, so modules add their own messages.

Rules and invariants:
* ``register_msg(MsgClass, handler)`` binds a wire message class (any tag range) to a
  handler ``handler(ctx, msg) -> None``. A handler validates the message, raises
  ``TxRejected(code, reason)`` to refuse it, and otherwise writes through ``ctx.store``
  and reports with ``ctx.emit``. Writes of a refused message are discarded by the ledger
  (each tx runs in its own overlay), so a handler may raise after writing.
* ``register_end_blocker(name, fn)`` adds ``fn(ctx)`` to the end of every block; end
  blockers run in sorted name order, after unbonding maturity and before the validator
  set is computed. They may not refuse anything (a raise there is a bug and stops the node).
* Handlers must be deterministic: no clock, randomness, I/O or iteration over unordered
  containers; time is ``ctx.time_ms`` (block time). Every node of a network must register
  the same handlers (importing ``p2pakash.market`` registers the market's).
* The registry is process-wide; registering a class twice with a different handler raises
  LocalProtocolError (``replace=True`` is for tests).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from p2pakash import wire
from p2pakash.errors import LocalProtocolError
from p2pakash.ledger.params import Params
from p2pakash.ledger.state import Store
from p2pakash.ledger.txs import Event, event


@attrs.define(kw_only=True)
class Context:
    """What a handler sees: the state, the block, the tx signer, and an event sink."""

    store: Store
    height: int
    time_ms: int
    chain_id: str
    params: Params
    sender: str = ""  # the tx signer's address ("" in begin/end block)
    pubkey: bytes = b""  # the tx signer's public key
    events: list[Event] = attrs.field(factory=list)
    quiet: bool = False  # a check (CheckTx): events would be thrown away, so none are made

    def emit(self, type_: str, **fields: object) -> None:
        if not self.quiet:
            self.events.append(event(type_, **fields))


Handler = Callable[[Context, Any], None]
EndBlocker = Callable[[Context], None]

_HANDLERS: dict[type, Handler] = {}
_END_BLOCKERS: dict[str, EndBlocker] = {}


def register_msg(cls: type, handler: Handler, *, replace: bool = False) -> None:
    if not _is_msg(cls):
        raise LocalProtocolError(f"{cls.__qualname__} is not a registered wire message")
    old = _HANDLERS.get(cls)
    if old is not None and old is not handler and not replace:
        raise LocalProtocolError(f"a handler for {cls.__qualname__} is already registered")
    _HANDLERS[cls] = handler


def _is_msg(cls: type) -> bool:
    try:
        wire.tag_of(cls)
    except KeyError:
        return False
    return True


def handler_for(msg: object) -> Handler | None:
    return _HANDLERS.get(type(msg))


def registered_msgs() -> tuple[type, ...]:
    return tuple(sorted(_HANDLERS, key=wire.tag_of))


def register_end_blocker(name: str, fn: EndBlocker, *, replace: bool = False) -> None:
    old = _END_BLOCKERS.get(name)
    if old is not None and old is not fn and not replace:
        raise LocalProtocolError(f"an end blocker named {name!r} is already registered")
    _END_BLOCKERS[name] = fn


def unregister(cls: type | None = None, *, end_blocker: str | None = None) -> None:
    """Remove a handler or end blocker (tests only)."""
    if cls is not None:
        _HANDLERS.pop(cls, None)
    if end_blocker is not None:
        _END_BLOCKERS.pop(end_blocker, None)


def end_blockers() -> list[EndBlocker]:
    return [_END_BLOCKERS[name] for name in sorted(_END_BLOCKERS)]
