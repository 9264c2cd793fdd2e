"""``p2pakash query account|validators|block|tx``: read the chain through a node's API.

Rules: the node is ``--node URL``, else the API address in ``--home DIR``'s config, else
http://127.0.0.1:26680. ``--json`` prints the node's JSON answer unchanged; the text form
is one ``name: value`` per line. An unreachable node or an unknown object is one line on
stderr and exit 1; a malformed argument is a usage error (exit 2).

This module also holds the node options and printing helpers ``tx`` and ``status`` share.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

import click

from p2pakash import crypto
from p2pakash.client import Json, NodeClient, node_url
from p2pakash.ledger.params import UAKT_PER_AKT

F = TypeVar("F", bound=Callable[..., Any])
_HASH = re.compile(r"^[0-9a-fA-F]{64}$")


def node_options(func: F) -> F:
    """``--node URL``, ``--home DIR`` and ``--json``, passed as ``node``, ``home_dir``,
    ``as_json``."""
    for option in reversed([
        click.option("--node", "node", metavar="URL",
                     help="node API URL [default: from --home's config, else "
                          "http://127.0.0.1:26680]"),
        click.option("--home", "home_dir", type=click.Path(path_type=Path, file_okay=False),
                     help="node home folder (its config gives the API address)"),
        click.option("--json", "as_json", is_flag=True, help="print JSON"),
    ]):
        func = option(func)
    return func


def make_client(node: str | None, home_dir: Path | None) -> NodeClient:
    try:
        return NodeClient(node_url(node, home_dir))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--node") from None


def echo(doc: Json, as_json: bool, lines: Callable[[Json], list[str]]) -> None:
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        for line in lines(doc):
            click.echo(line)


def fmt_uakt(amount: int) -> str:
    akt = Decimal(amount) / UAKT_PER_AKT
    return f"{amount} uakt ({akt.normalize():f} AKT)"


def parse_amount(text: str, what: str = "AMOUNT", *, zero_ok: bool = False) -> int:
    """``1000`` and ``1000uakt`` are uakt; ``1.5akt`` is 1,500,000 uakt. Positive only,
    unless ``zero_ok``."""
    raw = text.strip().lower()
    scale = 1
    if raw.endswith("uakt"):
        raw = raw[:-4]
    elif raw.endswith("akt"):
        raw, scale = raw[:-3], UAKT_PER_AKT
    try:
        value = Decimal(raw) * scale
    except InvalidOperation:
        value = Decimal("NaN")
    if (not value.is_finite() or value != value.to_integral_value() or value < 0
            or (value == 0 and not zero_ok)):
        kind = "a non-negative" if zero_ok else "a positive"
        raise click.BadParameter(f"{text!r} is not {kind} amount (e.g. 1000, 1000uakt or 1.5akt)",
                                 param_hint=what)
    return int(value)


def check_address(text: str, what: str = "ADDRESS") -> str:
    try:
        crypto.address_bytes(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=what) from None
    return text


def check_hash(text: str) -> str:
    if not _HASH.fullmatch(text):
        raise click.BadParameter(f"{text!r} is not a tx hash (64 hex characters)",
                                 param_hint="HASH")
    return text.lower()


# ---------------------------------------------------------------- text forms


def account_lines(doc: Json) -> list[str]:
    return [f"address: {doc['address']}", f"balance: {fmt_uakt(doc['balance'])}",
            f"sequence: {doc['sequence']}", f"pending txs: {doc['pending_txs']}"]


def validators_lines(doc: Json) -> list[str]:
    out = [f"validators for height {doc['height']} (total power {doc['total_power']}):"]
    for v in doc["validators"]:
        state = ("tombstoned" if v["tombstoned"] else "jailed" if v["jailed"]
                 else "active" if v["active"] else "inactive")
        out.append(f"  {v['moniker'] or '-'}  {v['address']}  power {v['power']}"
                   f"  tokens {v['tokens']} uakt  {state}  pubkey {v['pubkey']}")
    return out


def block_lines(doc: Json) -> list[str]:
    h = doc["header"]
    commit = doc["commit"]
    out = [f"height: {doc['height']}", f"hash: {doc['hash']}", f"time: {h['time']}",
           f"proposer: {h['proposer']}", f"app hash: {h['app_hash']}",
           f"txs: {doc['num_txs']}"]
    out += [f"  {tx}" for tx in doc["txs"]]
    out.append("commit: " + ("none yet" if commit is None else
                             f"round {commit['round']}, {commit['signatures']} signatures"))
    return out


def tx_lines(doc: Json) -> list[str]:
    if doc.get("pending"):
        return [f"hash: {doc['hash']}", "status: pending (in the mempool)"]
    code = doc["code"]
    status = "unknown result" if code is None else "ok" if code == 0 else f"failed (code {code})"
    out = [f"hash: {doc['hash']}", f"height: {doc['height']}", f"index: {doc['index']}",
           f"status: {status}"]
    if doc.get("log"):
        out.append(f"log: {doc['log']}")
    for ev in doc.get("events", []):
        attrs = " ".join(f"{k}={v}" for k, v in ev["attributes"].items())
        out.append(f"event: {ev['type']} {attrs}".rstrip())
    return out


# ---------------------------------------------------------------- commands


@click.group(name="query")
def command() -> None:
    """Query accounts, validators, blocks and txs through a node."""


@command.command(name="account")
@click.argument("address")
@node_options
def account(address: str, node: str | None, home_dir: Path | None, as_json: bool) -> None:
    """Balance and sequence of ADDRESS."""
    echo(make_client(node, home_dir).account(address), as_json, account_lines)


@command.command(name="validators")
@node_options
def validators(node: str | None, home_dir: Path | None, as_json: bool) -> None:
    """Validators, by voting power."""
    echo(make_client(node, home_dir).validators(), as_json, validators_lines)


@command.command(name="block")
@click.argument("height")
@node_options
def block(height: str, node: str | None, home_dir: Path | None, as_json: bool) -> None:
    """The block at HEIGHT (or "latest")."""
    if height != "latest" and not (height.isdigit() and int(height) >= 1):
        raise click.BadParameter(f"{height!r} is not a height (1, 2, ... or latest)",
                                 param_hint="HEIGHT")
    echo(make_client(node, home_dir).block(height), as_json, block_lines)


@command.command(name="tx")
@click.argument("hash_hex", metavar="HASH")
@node_options
def tx(hash_hex: str, node: str | None, home_dir: Path | None, as_json: bool) -> None:
    """A tx by its hash: its block and result, or pending."""
    echo(make_client(node, home_dir).tx(check_hash(hash_hex)), as_json, tx_lines)
