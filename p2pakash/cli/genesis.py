"""``p2pakash genesis``: create, extend and check a genesis file.

Rules: every change rewrites the file atomically (temp file, fsync, rename), so a file is
never half-written; the draft is fully checked before and after each change, and errors
name the file and the key. ``new`` refuses to overwrite an existing file.
"""

from __future__ import annotations

import time
from pathlib import Path

import attrs
import click

from p2pakash import crypto
from p2pakash.cli.query import check_address
from p2pakash.errors import ConfigError
from p2pakash.ledger.genesis import (
    GenesisAccount,
    GenesisDoc,
    GenesisValidator,
    check_doc,
    load_genesis,
    save_genesis,
)


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


@command.command("validate")
@click.argument("file", type=click.Path(path_type=Path))
def validate(file: Path) -> None:
    """Check FILE; print its genesis hash."""
    doc = load_genesis(file)
    click.echo(f"{file}: valid; chain {doc.chain_id}, {len(doc.accounts)} accounts,"
               f" {len(doc.validators)} validators, supply {doc.supply()} uakt,"
               f" genesis hash {doc.genesis_hash().hex()}")
