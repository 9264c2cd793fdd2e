"""The exception tree (h11 style).

Rules: every error the project raises on purpose derives from P2PAkashError.
RemoteProtocolError means a *peer* broke the protocol: the caller penalises or drops
that peer and carries on; it must never take the node down. Errors shown to a user
carry one line naming what and where (file, key, field).
"""

from __future__ import annotations


class P2PAkashError(Exception):
    """Base of every error p2pakash raises on purpose."""


class RemoteProtocolError(P2PAkashError):
    """A peer sent something that breaks the protocol (bad bytes, bad signature, flood)."""


class LocalProtocolError(P2PAkashError):
    """We were asked to do something the protocol forbids (a programming or usage error)."""


class DecodeError(RemoteProtocolError):
    """Bytes that are not a canonical encoding of a known wire message."""


class InvalidSignature(RemoteProtocolError):
    """A signature that does not verify for the claimed key, domain and chain."""


class HandshakeError(RemoteProtocolError):
    """The authenticated key exchange failed (bad transcript, wrong identity, timeout)."""


class ConfigError(P2PAkashError):
    """A configuration, genesis or key file is malformed; the message names file and key."""


class KeyFileError(ConfigError):
    """A key file is missing, malformed or readable by group/others."""


class SDLError(P2PAkashError):
    """An Akash SDL document is invalid; the message uses Akash's wording where it has one."""


class PluginError(P2PAkashError):
    """A plugin raised or answered nonsense."""


class ExecutorError(P2PAkashError):
    """The container runtime failed."""


class TxError(P2PAkashError):
    """A transaction is refused (by the mempool or the ledger); the message gives the reason."""


class StorageError(P2PAkashError):
    """Persistent state is corrupted or cannot be written; the node must stop, not go on."""
