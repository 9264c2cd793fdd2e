"""Peer addresses: ``ID@host:port``.

Rules: the ID is a node ID (40 lowercase hex characters, see crypto.node_id); the host
is a name or an IPv4/IPv6 literal (IPv6 in brackets); the port is 1..65535. ``parse``
raises ValueError with a message fit to show a user after the file and key. Parsed
addresses are remembered by their text (a process-wide memo of at most ``PARSED_MAX``, the
oldest eighth dropped at once): PEX answers repeat the same addresses, and a ``PeerAddr``
is a frozen value. Texts that fail are not remembered.
"""

from __future__ import annotations

import attrs

from p2pakash.crypto import NodeID, is_node_id
from p2pakash.gossip.caches import trim_oldest

PARSED_MAX = 8192
_parsed: dict[str, PeerAddr] = {}


@attrs.frozen(kw_only=True)
class PeerAddr:
    node_id: NodeID
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> PeerAddr:
        known = _parsed.get(text) if cls is PeerAddr else None
        if known is not None:
            return known
        addr = cls._parse(text)
        if cls is PeerAddr:
            _parsed[text] = addr
            trim_oldest(_parsed, PARSED_MAX)
        return addr

    @classmethod
    def _parse(cls, text: str) -> PeerAddr:
        expected = "expected 'ID@host:port'"
        node, sep, hostport = text.strip().partition("@")
        if not sep:
            raise ValueError(f"{expected}, got {text!r}")
        if not is_node_id(node):
            raise ValueError(f"{expected}: ID must be 40 lowercase hex characters, got {node!r}")
        host, port = split_host_port(hostport, expected)
        return cls(node_id=NodeID(node), host=host, port=port)

    @property
    def hostport(self) -> str:
        return join_host_port(self.host, self.port)

    def __str__(self) -> str:
        return f"{self.node_id}@{self.hostport}"


def split_host_port(text: str, expected: str = "expected 'host:port'") -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6); ValueError naming what is wrong."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{expected}, got {text!r}")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"{expected}, got {text!r}")
    if not host:
        raise ValueError(f"{expected}: missing host in {text!r}")
    if (not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5
            or not 0 < int(port_text) <= 65535):
        raise ValueError(f"{expected}: port must be 1..65535, got {port_text!r}")
    return host, int(port_text)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
