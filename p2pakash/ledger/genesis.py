"""The genesis document: JSON on disk, a frozen value (wire tags 260-262) in memory.

Rules and invariants:
* JSON shape::
      {"chain_id": "p2pakash-local", "genesis_time_ms": 0,
       "accounts":   [{"address": "akash1...", "balance": 1000000}],
       "validators": [{"pubkey": "<64 hex>", "stake": 1000000, "moniker": "v0"}],
       "params":     {"max_validators": 100, ...}}          # optional; defaults otherwise
* A validator's ``stake`` is uakt bonded at genesis as its operator's self-delegation (the
  operator is ``crypto.address(pubkey)``); it is created on top of the account balances.
  Genesis supply = sum(balances) + sum(stakes). Every stake is at least one AKT (power >= 1).
* Loading checks everything and raises ConfigError naming the file and the key
  (``genesis.json: accounts[2].balance: ...``); unknown keys are refused.
* ``txs``: signed txs (hex in JSON) the ledger runs in order on top of the genesis accounts
  and validators, at height 0 and genesis time, through the ordinary tx path (signature,
  sequence, fee, handler), as Cosmos runs its gentxs at InitChain: e.g. providers
  registered by their own ``CreateProvider`` so a network starts with its market. Each
  must decode here and pass there (``Ledger.init_genesis`` names the one that does not).
  JSON without ``txs`` is a document without them.
* ``genesis_hash()`` is sha256 of the canonical wire encoding: every node can compare it.
  It is remembered per document object (a frozen value; a simulator's 1,000 nodes share
  one document of thousands of accounts).
* ``save_genesis`` never leaves a half-written file: temp file, fsync, rename, fsync dir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from p2pakash import crypto, wire
from p2pakash.errors import ConfigError, DecodeError
from p2pakash.fsutil import write_atomic
from p2pakash.ledger.params import PARAM_NAMES, POWER_REDUCTION, Params
from p2pakash.ledger.txs import MAX_MONIKER, decode_tx

MAX_AMOUNT = 2**63 - 1
_HASHES: dict[int, tuple[GenesisDoc, bytes]] = {}  # id -> (the document, its hash)


@wire.message(tag=261)
@attrs.frozen(kw_only=True)
class GenesisAccount:
    address: str
    balance: int


@wire.message(tag=262)
@attrs.frozen(kw_only=True)
class GenesisValidator:
    pubkey: bytes
    stake: int
    moniker: str = ""

    @property
    def power(self) -> int:
        return self.stake // POWER_REDUCTION


@wire.message(tag=260)
@attrs.frozen(kw_only=True)
class GenesisDoc:
    chain_id: str
    genesis_time_ms: int
    accounts: tuple[GenesisAccount, ...] = ()
    validators: tuple[GenesisValidator, ...] = ()
    params: Params = attrs.field(factory=Params)
    txs: tuple[bytes, ...] = ()  # signed txs run at genesis (module rules)

    def genesis_hash(self) -> bytes:
        hit = _HASHES.get(id(self))
        if hit is not None and hit[0] is self:
            return hit[1]
        if len(_HASHES) >= 16:
            _HASHES.clear()
        value = wire.digest(self)
        _HASHES[id(self)] = (self, value)
        return value

    def supply(self) -> int:
        return sum(a.balance for a in self.accounts) + sum(v.stake for v in self.validators)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "chain_id": self.chain_id,
            "genesis_time_ms": self.genesis_time_ms,
            "accounts": [{"address": a.address, "balance": a.balance} for a in self.accounts],
            "validators": [{"pubkey": v.pubkey.hex(), "stake": v.stake, "moniker": v.moniker}
                           for v in self.validators],
            "params": attrs.asdict(self.params),
        }
        if self.txs:
            out["txs"] = [tx.hex() for tx in self.txs]
        return out

    def validate(self, where: str = "genesis") -> None:
        """Raise ConfigError on the first rule this document breaks."""
        check_doc(self.to_json(), where)


def _int(value: object, where: str, *, low: int = 0) -> int:
    if type(value) is not int or not low <= value <= MAX_AMOUNT:
        raise ConfigError(f"{where}: must be an integer in {low}..{MAX_AMOUNT}, got {value!r}")
    return value


def _str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string, got {value!r}")
    return value


def _keys(obj: object, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: must be an object")
    for key in sorted(required):
        if key not in obj:
            raise ConfigError(f"{where}.{key}: missing")
    for key in obj:
        if key not in required | optional:
            raise ConfigError(f"{where}.{key}: unknown key")
    return obj


def check_doc(raw: object, where: str, *, require_validators: bool = True) -> GenesisDoc:
    """Turn decoded JSON into a GenesisDoc, or raise ConfigError naming ``where`` and the key.

    ``require_validators=False`` accepts a draft still being assembled by the CLI."""
    doc = _keys(raw, where, {"chain_id", "genesis_time_ms"},
                {"accounts", "validators", "params", "txs"})
    chain_id = _str(doc["chain_id"], f"{where}: chain_id")
    if not chain_id or "\x00" in chain_id or len(chain_id) > 64:
        raise ConfigError(f"{where}: chain_id: must be 1..64 characters without NUL")
    time_ms = _int(doc["genesis_time_ms"], f"{where}: genesis_time_ms")
    accounts: list[GenesisAccount] = []
    seen: set[str] = set()
    raw_accounts = doc.get("accounts", [])
    if not isinstance(raw_accounts, list):
        raise ConfigError(f"{where}: accounts: must be a list")
    for i, item in enumerate(raw_accounts):
        at = f"{where}: accounts[{i}]"
        entry = _keys(item, at, {"address", "balance"}, set())
        addr = _str(entry["address"], f"{at}.address")
        try:
            crypto.address_bytes(addr)
        except ValueError as exc:
            raise ConfigError(f"{at}.address: {exc}") from None
        if addr in seen:
            raise ConfigError(f"{at}.address: duplicate account {addr}")
        seen.add(addr)
        accounts.append(GenesisAccount(address=addr, balance=_int(entry["balance"],
                                                                  f"{at}.balance")))
    validators: list[GenesisValidator] = []
    seen_keys: set[bytes] = set()
    raw_validators = doc.get("validators", [])
    if not isinstance(raw_validators, list):
        raise ConfigError(f"{where}: validators: must be a list")
    for i, item in enumerate(raw_validators):
        at = f"{where}: validators[{i}]"
        entry = _keys(item, at, {"pubkey", "stake"}, {"moniker"})
        try:
            pubkey = bytes.fromhex(_str(entry["pubkey"], f"{at}.pubkey"))
        except ValueError:
            raise ConfigError(f"{at}.pubkey: not hex") from None
        if len(pubkey) != 32:
            raise ConfigError(f"{at}.pubkey: an ed25519 public key is 32 bytes, got {len(pubkey)}")
        if pubkey in seen_keys:
            raise ConfigError(f"{at}.pubkey: duplicate validator {pubkey.hex()}")
        seen_keys.add(pubkey)
        stake = _int(entry["stake"], f"{at}.stake", low=POWER_REDUCTION)
        moniker = _str(entry.get("moniker", ""), f"{at}.moniker")
        if len(moniker) > MAX_MONIKER:
            raise ConfigError(f"{at}.moniker: longer than {MAX_MONIKER} characters")
        validators.append(GenesisValidator(pubkey=pubkey, stake=stake, moniker=moniker))
    params = _params(doc.get("params", {}), f"{where}: params")
    if require_validators and not validators:
        raise ConfigError(f"{where}: validators: at least one validator is required")
    txs = _txs(doc.get("txs", []), f"{where}: txs", params.max_tx_bytes)
    result = GenesisDoc(chain_id=chain_id, genesis_time_ms=time_ms, accounts=tuple(accounts),
                        validators=tuple(validators), params=params, txs=txs)
    if result.supply() > MAX_AMOUNT:
        raise ConfigError(f"{where}: total supply {result.supply()} exceeds {MAX_AMOUNT}")
    return result


def _txs(raw: object, where: str, max_tx_bytes: int) -> tuple[bytes, ...]:
    """Hex strings of signed txs that decode (whether they pass is the ledger's check)."""
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: must be a list")
    out: list[bytes] = []
    for i, item in enumerate(raw):
        try:
            data = bytes.fromhex(_str(item, f"{where}[{i}]"))
        except ValueError:
            raise ConfigError(f"{where}[{i}]: not hex") from None
        try:
            decode_tx(data, max_size=max_tx_bytes)
        except DecodeError as exc:
            raise ConfigError(f"{where}[{i}]: not a signed tx ({exc})") from None
        out.append(data)
    return tuple(out)


def _params(raw: object, where: str) -> Params:
    entry = _keys(raw, where, set(), set(PARAM_NAMES))
    for key, value in entry.items():
        _int(value, f"{where}.{key}")
    try:
        return Params(**entry)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_genesis(path: Path, *, require_validators: bool = True) -> GenesisDoc:
    """Read and check a genesis file (``require_validators=False``: a draft being built)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: genesis file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: invalid JSON (not UTF-8 text)") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise ConfigError(f"{path}: invalid JSON ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid JSON (nested too deeply)") from None
    return check_doc(raw, str(path), require_validators=require_validators)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON so that ``path`` holds either the old or the new content."""
    write_atomic(Path(path), (json.dumps(data, indent=2) + "\n").encode())


def save_genesis(path: Path, doc: GenesisDoc) -> None:
    write_json_atomic(path, doc.to_json())
