"""TCP transport: the secret connection (``secret.py``) over trio sockets.

Rules and invariants:
* The whole handshake (hello both ways, Auth both ways) runs under
  ``trio.fail_after(handshake_timeout)``; any failure there (timeout, EOF, garbage, wrong
  chain or identity) is a HandshakeError and the socket is closed.
* Reads are buffered: one ``receive_some`` may carry many frames and each frame costs a slice
  and a decryption. Writes hold a lock from sealing to ``send_all`` so nonces go out in order.
* ``serve`` bounds handshakes in progress: ``max_pending_per_host`` per remote IP (over it a
  new socket is closed at once) and ``max_pending`` in total (at it, the OLDEST handshake in
  progress is cancelled to make room, so slow handshakes from many addresses cannot lock
  newcomers out: an honest handshake takes milliseconds, a slow loris is always oldest).
  Once authenticated, the connection belongs to the handler (the peer manager enforces
  peer counts).
* Dropped and failed inbound handshakes are logged at most once per remote host per
  ``LOG_EVERY`` seconds, with the count of those not logged (a connection flood would
  otherwise write one line per socket).
* A peer that breaks framing or authentication gets RemoteProtocolError from ``receive``
  and its socket closed; ``serve`` never dies of a peer.
* The advertised listen address (in Auth) is ``advertise`` if given, else the bound address
  once ``serve`` has bound, else ``listen`` when it names a fixed port, else "". A wildcard
  host (0.0.0.0, ::) is advertised as is; the receiver should substitute the host it observed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections import defaultdict

import trio

from p2pakash.crypto import NodeID, PrivateKey, PublicKey
from p2pakash.errors import HandshakeError, LocalProtocolError, RemoteProtocolError
from p2pakash.gossip import secret
from p2pakash.gossip.addr import join_host_port as join_addr
from p2pakash.gossip.transport import ConnectionClosed, Handler, parse_addr, run_handler

log = logging.getLogger(__name__)

RECEIVE_SIZE = 65536
LOG_EVERY = 10.0  # seconds between two lines about one remote host's failed handshakes


class _LogLimiter:
    """At most one line per key per ``every`` seconds; counts what it held back (bounded)."""

    def __init__(self, every: float, max_keys: int = 1024) -> None:
        self.every = every
        self.max_keys = max_keys
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str, now: float) -> int | None:
        """None to stay quiet, else how many lines about ``key`` were held back."""
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        if len(self._last) >= self.max_keys and key not in self._last:
            self._last.clear()
            self._held.clear()
        self._last[key] = now
        return self._held.pop(key, 0)
AUTH_FRAME_LIMIT = 4096
_ACCEPT_RETRY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


class TcpConnection:
    """An authenticated, encrypted connection over one TCP socket."""

    def __init__(self, stream: trio.SocketStream, keys: secret.SessionKeys, *,
                 local_id: NodeID, outbound: bool, remote_host: str, max_frame: int,
                 initial: bytes = b"") -> None:
        self.local_id = local_id
        self.remote_id = NodeID("")
        self.remote_pubkey = PublicKey(b"")
        self.remote_listen_addr = ""
        self.remote_version = ""
        self.remote_host = remote_host
        self.outbound = outbound
        self.max_frame = max_frame
        self.frames_sent = 0
        self.frames_received = 0
        self._stream = stream
        self._sealer = secret.FrameSealer(keys.send_key)
        self._reader = secret.FrameReader(keys.recv_key, max_frame=max_frame, initial=initial)
        self._send_lock = trio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        way = "to" if self.outbound else "from"
        return f"<TcpConnection {way} {self.remote_id or '?'} at {self.remote_host}>"

    async def send(self, payload: bytes) -> None:
        if len(payload) > self.max_frame:
            raise LocalProtocolError(
                f"frame of {len(payload)} bytes exceeds the limit of {self.max_frame}")
        lock = self._send_lock
        try:
            lock.acquire_nowait()  # uncontended: send_all below is the checkpoint
        except trio.WouldBlock:
            await lock.acquire()
        try:
            if self._closed:
                raise ConnectionClosed("connection is closed")
            try:
                data = self._sealer.seal(payload)
            except LocalProtocolError as exc:
                await self.aclose()
                raise ConnectionClosed(str(exc)) from None
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                await self.aclose()
                raise ConnectionClosed(f"send failed: {exc or type(exc).__name__}") from None
            self.frames_sent += 1
        finally:
            lock.release()

    async def receive(self) -> bytes:
        reader = self._reader
        while True:
            if self._closed:
                raise ConnectionClosed("connection is closed")
            try:
                frame = reader.next_frame()
            except RemoteProtocolError:
                await self.aclose()
                raise
            if frame is not None:
                self.frames_received += 1
                await trio.lowlevel.checkpoint()
                return frame
            try:
                data = await self._stream.receive_some(max(RECEIVE_SIZE, reader.wanted()))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                await self.aclose()
                raise ConnectionClosed(f"receive failed: {exc or type(exc).__name__}") from None
            if not data:
                await self.aclose()
                raise ConnectionClosed("peer closed the connection")
            reader.feed(data)

    async def aclose(self) -> None:
        self._closed = True
        await self._stream.aclose()


class TcpTransport:
    """Listens and dials TCP; every connection is a handshaken ``TcpConnection``."""

    def __init__(self, key: PrivateKey, chain_id: str, listen: str | None, *,
                 max_frame: int = 1 << 20, handshake_timeout: float = 5.0,
                 version: str = "p2pakash/0.1", advertise: str | None = None,
                 max_pending: int = 64, max_pending_per_host: int = 8) -> None:
        if listen is not None:
            parse_addr(listen, allow_zero_port=True)  # fail early on a bad config value
        if advertise is not None:
            parse_addr(advertise)
        self.key = key
        self.node_id = key.node_id
        self.chain_id = chain_id
        self.listen = listen
        self.max_frame = max_frame
        self.handshake_timeout = handshake_timeout
        self.version = version
        self.advertise = advertise
        self.max_pending = max_pending
        self.max_pending_per_host = max_pending_per_host
        self.listen_addr = ""  # the bound "host:port" once serve has started
        self._pending: defaultdict[str, int] = defaultdict(int)
        self._pending_scopes: dict[trio.CancelScope, None] = {}  # live handshakes, oldest first
        self.evicted = 0  # handshakes cancelled to make room for a newer one
        self._drop_log = _LogLimiter(LOG_EVERY)
        self.failed_inbound = 0  # inbound handshakes that failed (logged or not)

    def __repr__(self) -> str:
        return f"<TcpTransport {self.node_id} listen={self.listen_addr or self.listen}>"

    @property
    def advertised_addr(self) -> str:
        if self.advertise is not None:
            return self.advertise
        if self.listen_addr:
            return self.listen_addr
        if self.listen is not None and parse_addr(self.listen, allow_zero_port=True)[1] != 0:
            return self.listen
        return ""

    # ------------------------------------------------------------ handshake

    async def _handshake(self, stream: trio.SocketStream, *, outbound: bool,
                         expected: NodeID | None, remote_host: str) -> TcpConnection:
        try:
            with trio.fail_after(self.handshake_timeout):
                return await self._handshake_steps(stream, outbound, expected, remote_host)
        except trio.TooSlowError:
            raise HandshakeError(
                f"handshake timed out after {self.handshake_timeout:g} s") from None
        except ConnectionClosed as exc:
            raise HandshakeError(f"connection lost during the handshake: {exc}") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise HandshakeError(f"connection lost during the handshake: {exc!r}") from None
        except RemoteProtocolError as exc:
            if isinstance(exc, HandshakeError):
                raise
            raise HandshakeError(f"bad frame during the handshake: {exc}") from None

    async def _handshake_steps(self, stream: trio.SocketStream, outbound: bool,
                               expected: NodeID | None, remote_host: str) -> TcpConnection:
        ephemeral = secret.Ephemeral.generate()
        await stream.send_all(secret.make_hello(ephemeral.public))
        buf = bytearray()
        while len(buf) < secret.HELLO_SIZE:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise ConnectionClosed("peer closed before its hello")
            buf += data
            secret.check_magic_prefix(buf)
        peer_public = secret.parse_hello(bytes(buf[:secret.HELLO_SIZE]))
        keys = secret.derive_session(ephemeral, peer_public)
        # the Auth frames travel under their own limit, whatever max_frame is configured
        conn = TcpConnection(stream, keys, local_id=self.node_id, outbound=outbound,
                             remote_host=remote_host, max_frame=AUTH_FRAME_LIMIT,
                             initial=bytes(buf[secret.HELLO_SIZE:]))
        await conn.send(secret.make_auth(self.key, self.chain_id, keys.challenge,
                                         listen_addr=self.advertised_addr, version=self.version))
        remote_id, auth = secret.check_auth(
            await conn.receive(), chain_id=self.chain_id, challenge=keys.challenge,
            local_id=self.node_id, expected=expected)
        conn.remote_id = remote_id
        conn.remote_pubkey = PublicKey(auth.pubkey)
        conn.remote_listen_addr = auth.listen_addr
        conn.remote_version = auth.version
        conn.max_frame = conn._reader.max_frame = self.max_frame
        return conn

    # ------------------------------------------------------------ dial

    async def dial(self, addr: str, *, expected: NodeID | None = None) -> TcpConnection:
        host, port = parse_addr(addr)
        with trio.move_on_after(self.handshake_timeout) as scope:
            stream = await trio.open_tcp_stream(host, port)
        if scope.cancelled_caught:
            raise TimeoutError(errno.ETIMEDOUT, f"connecting to {addr} timed out after"
                                                f" {self.handshake_timeout:g} s")
        _set_nodelay(stream)
        try:
            return await self._handshake(stream, outbound=True, expected=expected,
                                         remote_host=_peer_host(stream, host))
        except BaseException:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            raise

    # ------------------------------------------------------------ serve

    async def serve(self, handler: Handler, *,
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        if self.listen is None:
            raise LocalProtocolError("this transport has no listen address; it can only dial")
        host, port = parse_addr(self.listen, allow_zero_port=True)
        listeners = await trio.open_tcp_listeners(port, host=host)
        try:
            bound = listeners[0].socket.getsockname()
            self.listen_addr = join_addr(host, bound[1])
            log.info("%s listening on %s", self.node_id, self.listen_addr)
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(self._accept_loop, listener, handler, nursery)
                task_status.started(self.listen_addr)
        finally:
            self.listen_addr = ""
            with trio.CancelScope(shield=True):
                for listener in listeners:
                    await listener.aclose()

    async def _accept_loop(self, listener: trio.SocketListener, handler: Handler,
                           nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_RETRY_ERRNOS:
                    raise
                log.warning("accept failed (%s); retrying in 100 ms", exc)
                await trio.sleep(0.1)
                continue
            remote_host = _peer_host(stream, "?")
            if self._pending[remote_host] >= self.max_pending_per_host:
                self._log_drop(remote_host, "too many handshakes in progress from"
                               f" {remote_host}; dropping a connection")
                await stream.aclose()
                continue
            if len(self._pending_scopes) >= self.max_pending:
                oldest = next(iter(self._pending_scopes))
                del self._pending_scopes[oldest]
                oldest.cancel()
                self.evicted += 1
            scope = trio.CancelScope()
            self._pending_scopes[scope] = None
            self._pending[remote_host] += 1
            nursery.start_soon(self._inbound, stream, remote_host, handler, scope)

    async def _inbound(self, stream: trio.SocketStream, remote_host: str,
                       handler: Handler, scope: trio.CancelScope) -> None:
        try:
            _set_nodelay(stream)
            with scope:
                conn = await self._handshake(stream, outbound=False, expected=None,
                                             remote_host=remote_host)
            if scope.cancelled_caught:
                raise HandshakeError("evicted: too many handshakes in progress (this was the"
                                     " oldest)")
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            if not isinstance(exc, HandshakeError):
                raise
            self.failed_inbound += 1
            self._log_drop(remote_host, f"inbound handshake from {remote_host} failed: {exc}")
            return
        finally:
            self._pending_scopes.pop(scope, None)
            self._pending[remote_host] -= 1
            if not self._pending[remote_host]:
                del self._pending[remote_host]
        await run_handler(handler, conn)


    def _log_drop(self, remote_host: str, what: str) -> None:
        held = self._drop_log.allow(remote_host, trio.current_time())
        if held is not None:
            more = f" ({held} more from this host not logged)" if held else ""
            log.info("%s%s", what, more)


def _set_nodelay(stream: trio.SocketStream) -> None:
    # not TCP (a test socketpair) or already closed: nothing to tune
    with contextlib.suppress(OSError):
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)


def _peer_host(stream: trio.SocketStream, default: str) -> str:
    try:
        name = stream.socket.getpeername()
    except OSError:
        return default
    return str(name[0]) if isinstance(name, tuple) else default


__all__ = ["AUTH_FRAME_LIMIT", "RECEIVE_SIZE", "TcpConnection", "TcpTransport"]
