"""What every transport offers: authenticated, framed, bidirectional connections.

Rules and invariants:
* A ``Connection`` carries whole frames (``bytes`` payloads) in order, both ways. It is
  authenticated before anyone sees it: ``remote_id`` is the node ID of the key that proved
  itself in the handshake, and both sides agreed on the chain ID.
* ``send`` is safe for concurrent callers (frames never interleave). ``receive`` is for one
  reader at a time. Both raise ``ConnectionClosed`` once the link is gone (EOF, reset, or
  our own ``aclose``); ``receive`` raises ``RemoteProtocolError`` on a bad frame (oversize,
  failed authentication) and the connection is closed when it does.
* ``Transport.serve`` handshakes each inbound connection in its own task under a timeout and
  awaits ``handler(conn)`` in that task; the connection is closed when the handler returns.
  A failed handshake is logged and closed; it never ends ``serve``. A handler that raises
  ``RemoteProtocolError`` or ``ConnectionClosed`` only loses that connection; any other
  exception is a bug and propagates out of ``serve``.
* ``dial`` raises ``HandshakeError`` (wrong ID, other chain, bad auth, timeout) or ``OSError``
  (refused, unreachable, unparsable address).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from p2pakash.crypto import NodeID, PublicKey
from p2pakash.errors import P2PAkashError, RemoteProtocolError
from p2pakash.gossip.addr import split_host_port

log = logging.getLogger(__name__)


class ConnectionClosed(P2PAkashError):
    """The connection reached EOF or failed; ``send``/``receive`` cannot go on."""


class Connection(Protocol):
    local_id: NodeID
    remote_id: NodeID
    remote_pubkey: PublicKey
    remote_listen_addr: str  # "host:port" the peer says it listens on (from Auth), "" if none
    remote_host: str  # observed remote IP (TCP) or memory host, for per-IP limits and bans
    outbound: bool

    async def send(self, payload: bytes) -> None: ...

    async def receive(self) -> bytes: ...

    async def aclose(self) -> None: ...


Handler = Callable[[Connection], Awaitable[None]]


class Transport(Protocol):
    node_id: NodeID

    async def serve(self, handler: Handler, *,
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None: ...

    async def dial(self, addr: str, *, expected: NodeID | None = None) -> Connection: ...


def parse_addr(addr: str, *, allow_zero_port: bool = False) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) -> (host, port); OSError(EINVAL) naming what is wrong."""
    text = addr
    if allow_zero_port and (addr.endswith(":0") and not addr.endswith("::0")):
        text = addr[:-2] + ":1"  # accept port 0 (an ephemeral port) for listening
    try:
        host, port = split_host_port(text)
    except ValueError as exc:
        raise OSError(errno.EINVAL, f"bad address {addr!r}: {exc}") from None
    return host, 0 if text is not addr else port


async def run_handler(handler: Handler, conn: Connection) -> None:
    """Await ``handler(conn)``; peer faults end only this connection, which is always closed."""
    try:
        await handler(conn)
    except (RemoteProtocolError, ConnectionClosed) as exc:
        log.debug("connection with %s ended: %s", conn.remote_id, exc)
    except BaseExceptionGroup as group:  # a handler's nursery wraps what its tasks raised
        _, rest = group.split((RemoteProtocolError, ConnectionClosed))
        if rest is not None:
            raise rest from None
        log.debug("connection with %s ended: %s", conn.remote_id, group)
    finally:
        with trio.CancelScope(shield=True):
            await conn.aclose()
