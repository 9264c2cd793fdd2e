"""What a provider remembers about its leases across restarts (wire tag 410).

Rules and invariants:
* One file per won lease under ``<dir>/leases/``, named by the sha256 of the lease ID, holding
  a wire-encoded ``LeaseRecord``: the order (for the group, its resources and the manifest
  hash), the group sequence, and the accepted manifest (b"" until one arrives).
* Writes are atomic (temp file, fsync, rename); a file that does not decode is reported and
  skipped, never fatal. ``dir=None`` keeps nothing (tests, simulations).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import attrs

from p2pakash import wire
from p2pakash.errors import DecodeError
from p2pakash.fsutil import write_atomic
from p2pakash.market.orders import LeaseID, Order

log = logging.getLogger(__name__)


@wire.message(tag=410)
@attrs.frozen(kw_only=True)
class LeaseRecord:
    lease_id: LeaseID
    order: Order
    gseq: int
    manifest: bytes


class LeaseStore:
    def __init__(self, directory: Path | None) -> None:
        self.dir = None if directory is None else directory / "leases"

    def _path(self, lease_id: LeaseID) -> Path:
        assert self.dir is not None
        return self.dir / (hashlib.sha256(str(lease_id).encode()).hexdigest()[:32] + ".lease")

    def save(self, record: LeaseRecord) -> None:
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self._path(record.lease_id), wire.encode(record))

    def delete(self, lease_id: LeaseID) -> None:
        if self.dir is not None:
            self._path(lease_id).unlink(missing_ok=True)

    def load(self) -> dict[LeaseID, LeaseRecord]:
        out: dict[LeaseID, LeaseRecord] = {}
        if self.dir is None or not self.dir.is_dir():
            return out
        for path in sorted(self.dir.glob("*.lease")):
            try:
                record = wire.decode(path.read_bytes(), LeaseRecord)
            except (OSError, DecodeError) as exc:
                log.error("provider lease record %s unreadable, skipped: %s", path, exc)
                continue
            out[record.lease_id] = record
        return out
