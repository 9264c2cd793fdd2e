"""``p2pakash genesis``: create, extend and check a genesis file.

Rules: every change rewrites the file atomically (temp file, fsync, rename), so a file is
never half-written; the draft is fully checked before and after each change, and errors
name the file and the key. ``new`` refuses to overwrite an existing file.
``add-provider`` signs the provider's ``CreateProvider`` as a genesis tx (its account's next
sequence among the document's txs); ``add-tx`` appends any signed tx. ``validate`` runs the
whole genesis on an in-memory ledger, so a genesis tx that would fail is named there.
"""

from __future__ import annotations

import time
from pathlib import Path

import attrs
import click

import p2pakash.market.ledger_market as lm  # registers the market's messages and handlers
from p2pakash import crypto
from p2pakash.cli.query import check_address
from p2pakash.errors import ConfigError, DecodeError
from p2pakash.ledger import Ledger, decode_tx, sign_tx
from p2pakash.ledger.genesis import (
    GenesisAccount,
    GenesisDoc,
    GenesisValidator,
    check_doc,
    load_genesis,
    save_genesis,
)
from p2pakash.ledger.kv import MemoryKV
from p2pakash.market.sdl.resources import Attribute


def _amount(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise click.BadParameter(f"{what} must be an integer number of uakt, got {text!r}"
                                 ) from None
    if value < 0:
        raise click.BadParameter(f"{what} must not be negative")
    return value


def _save(path: Path, doc: GenesisDoc) -> None:
    check_doc(doc.to_json(), str(path), require_validators=False)  # never write a bad file
    save_genesis(path, doc)


@click.group("genesis")
def command() -> None:
    """Create and check genesis files."""


@command.command("new")
@click.option("--chain-id", required=True, help="The chain ID (1..64 characters).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Where to write the genesis file.")
@click.option("--genesis-time-ms", type=int, default=None,
              help="Genesis time in ms since the epoch (default: now).")
def new(chain_id: str, out: Path, genesis_time_ms: int | None) -> None:
    """Write a new genesis file with no accounts or validators yet."""
    if out.exists():
        raise ConfigError(f"{out}: already exists; refusing to overwrite it")
    when = int(time.time() * 1000) if genesis_time_ms is None else genesis_time_ms
    doc = GenesisDoc(chain_id=chain_id, genesis_time_ms=when)
    _save(out, doc)
    click.echo(f"wrote {out} (chain {chain_id})")


@command.command("add-account")
@click.argument("file", type=click.Path(path_type=Path))
@click.argument("address")
@click.argument("amount")
def add_account(file: Path, address: str, amount: str) -> None:
    """Give ADDRESS a genesis balance of AMOUNT uakt."""
    doc = load_genesis(file, require_validators=False)
    check_address(address)
    if any(a.address == address for a in doc.accounts):
        raise ConfigError(f"{file}: accounts: {address} is already in the genesis")
    account = GenesisAccount(address=address, balance=_amount(amount, "AMOUNT"))
    _save(file, attrs.evolve(doc, accounts=(*doc.accounts, account)))
    click.echo(f"added account {address} with {account.balance} uakt")


@command.command("add-validator")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--key", "key_file", required=True, type=click.Path(path_type=Path),
              help="The validator's key file (its consensus and operator key).")
@click.option("--stake", required=True, help="Self stake in uakt (at least 1000000).")
@click.option("--moniker", default="", help="A display name.")
def add_validator(file: Path, key_file: Path, stake: str, moniker: str) -> None:
    """Add the validator of KEY with a genesis self stake."""
    doc = load_genesis(file, require_validators=False)
    key = crypto.load_key(key_file)
    if any(v.pubkey == key.public for v in doc.validators):
        raise ConfigError(f"{file}: validators: {key.public.hex()} is already in the genesis")
    val = GenesisValidator(pubkey=key.public, stake=_amount(stake, "--stake"), moniker=moniker)
    _save(file, attrs.evolve(doc, validators=(*doc.validators, val)))
    click.echo(f"added validator {key.public.hex()} ({key.address}) with {val.stake} uakt")


@command.command("add-provider")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--key", "key_file", required=True, type=click.Path(path_type=Path),
              help="The provider's key file (its account signs the registration).")
@click.option("--host-uri", required=True, help="Where tenants reach the provider.")
@click.option("--attr", "attributes", multiple=True, metavar="KEY=VALUE",
              help="A provider attribute (repeatable), e.g. region=eu.")
@click.option("--bond", default="500000", show_default=True, help="Bond in uakt.")
def add_provider(file: Path, key_file: Path, host_uri: str, attributes: tuple[str, ...],
                 bond: str) -> None:
    """Register the provider of KEY at genesis (a signed CreateProvider genesis tx)."""
    doc = load_genesis(file, require_validators=False)
    key = crypto.load_key(key_file)
    pairs = []
    for text in attributes:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{text!r} is not KEY=VALUE", param_hint="--attr")
        pairs.append(Attribute(key=name, value=value))
    amount = _amount(bond, "--bond")
    funds = next((a.balance for a in doc.accounts if a.address == key.address), 0)
    if funds < amount + doc.params.min_fee:
        raise ConfigError(f"{file}: accounts: {key.address} holds {funds} uakt at genesis, "
                          f"less than the bond {amount} plus the fee {doc.params.min_fee}")
    msg = lm.CreateProvider(host_uri=host_uri, attributes=tuple(pairs), bond=amount)
    sequence = sum(1 for raw in doc.txs if decode_tx(raw).body.sender == key.address)
    tx = sign_tx(key, doc.chain_id, sequence=sequence, msgs=(msg,), fee=doc.params.min_fee)
    _save(file, attrs.evolve(doc, txs=(*doc.txs, tx.encode())))
    click.echo(f"added provider {key.address} ({host_uri}) with a {amount} uakt bond")


@command.command("add-tx")
@click.argument("file", type=click.Path(path_type=Path))
@click.argument("tx_hex")
def add_tx(file: Path, tx_hex: str) -> None:
    """Append the signed tx TX_HEX to FILE's genesis txs."""
    doc = load_genesis(file, require_validators=False)
    try:
        raw = bytes.fromhex(tx_hex)
        tx = decode_tx(raw)
    except (ValueError, DecodeError) as exc:
        raise click.BadParameter(f"not a signed tx in hex: {exc}", param_hint="TX_HEX"
                                 ) from None
    _save(file, attrs.evolve(doc, txs=(*doc.txs, raw)))
    click.echo(f"added genesis tx {tx.hash().hex()} from {tx.body.sender}")


@command.command("validate")
@click.argument("file", type=click.Path(path_type=Path))
def validate(file: Path) -> None:
    """Check FILE (and run it on an in-memory ledger); print its genesis hash."""
    doc = load_genesis(file)
    try:
        Ledger.init_genesis(MemoryKV(), doc)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    click.echo(f"{file}: valid; chain {doc.chain_id}, {len(doc.accounts)} accounts,"
               f" {len(doc.validators)} validators, {len(doc.txs)} txs, supply {doc.supply()} uakt,"
               f" genesis hash {doc.genesis_hash().hex()}")
