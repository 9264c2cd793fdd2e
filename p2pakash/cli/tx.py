"""``p2pakash tx send|stake ...``: sign a tx with a local key and submit it to a node.

Rules: the signing key is ``--from KEYFILE`` or ``--home DIR`` (DIR/node_key.json, which
is also a validator's consensus key); the node is ``--node URL``, else ``--home``'s API
address, else http://127.0.0.1:26680. The chain ID comes from the node's ``/status`` and
the sequence from ``/account`` (``next_sequence`` counts the sender's txs pending in the
mempool, so several txs may be sent back to back). A refused tx prints the node's reason
in one line, exit 1; with ``--wait`` a tx that fails in its block also exits 1. Amounts
are uakt (``1000``, ``1000uakt``) or AKT (``1.5akt``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from p2pakash import crypto, home
from p2pakash.cli.query import check_address, make_client, parse_amount
from p2pakash.client import ApiError, Json
from p2pakash.errors import P2PAkashError, TxError
from p2pakash.ledger.txs import (
    MAX_MONIKER,
    CreateValidator,
    Delegate,
    Send,
    Undelegate,
    Unjail,
    sign_tx,
)

F = TypeVar("F", bound=Callable[..., Any])


def tx_options(func: F) -> F:
    for option in reversed([
        click.option("--from", "from_file", type=click.Path(path_type=Path, dir_okay=False),
                     help="key file to sign with"),
        click.option("--home", "home_dir", type=click.Path(path_type=Path, file_okay=False),
                     help="node home: signs with DIR/node_key.json, talks to its API"),
        click.option("--node", "node", metavar="URL", help="node API URL"),
        click.option("--fee", "fee", default="0", show_default=True, help="fee (uakt or akt)"),
        click.option("--memo", "memo", default="", help="memo (up to 256 characters)"),
        click.option("--json", "as_json", is_flag=True, help="print JSON"),
        click.option("--wait", "wait", is_flag=True, help="wait until the tx is in a block"),
        click.option("--timeout", "timeout", type=click.FloatRange(min=0.1), default=30.0,
                     show_default=True, help="seconds --wait waits"),
    ]):
        func = option(func)
    return func


def _key(from_file: Path | None, home_dir: Path | None) -> crypto.PrivateKey:
    if from_file is not None:
        return crypto.load_key(from_file)
    if home_dir is not None:
        return crypto.load_key(home.key_path(home_dir))
    raise click.UsageError("give the signing key: --from KEYFILE or --home DIR")


def submit(opts: dict[str, Any], msgs: tuple[object, ...],
           key: crypto.PrivateKey | None = None) -> None:
    """Sign ``msgs`` with ``key`` (default: the chosen key), submit, print, optionally wait
    for the block."""
    key = key or _key(opts["from_file"], opts["home_dir"])
    fee = parse_amount(opts["fee"], "--fee", zero_ok=True)
    client = make_client(opts["node"], opts["home_dir"])
    chain_id = client.status()["chain_id"]
    sequence = int(client.account(key.address)["next_sequence"])
    tx = sign_tx(key, chain_id, sequence=sequence, msgs=msgs, fee=fee, memo=opts["memo"])
    try:
        answer = client.submit(tx.encode())
    except ApiError as exc:
        raise TxError(f"tx refused by {client.url}: {exc}") from None
    doc: Json = {**answer, "sender": key.address, "sequence": sequence}
    failure = ""
    if opts["wait"]:
        found = client.wait_for_tx(answer["hash"], timeout=opts["timeout"])
        doc["result"] = found
        if found.get("code") not in (0, None):
            failure = (f"tx {answer['hash']} failed at height {found['height']}:"
                       f" {found.get('log') or 'code ' + str(found['code'])}")
    if opts["as_json"]:
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(f"tx {answer['hash']} accepted (sender {key.address}, sequence {sequence})")
        result = doc.get("result")
        if result is not None and not failure:
            click.echo(f"committed at height {result['height']} (index {result['index']})")
    if failure:
        raise TxError(failure)


@click.group(name="tx")
def command() -> None:
    """Sign and submit transactions."""


@command.command(name="send")
@click.argument("to")
@click.argument("amount")
@tx_options
def send(to: str, amount: str, **opts: Any) -> None:
    """Send AMOUNT to the account TO."""
    submit(opts, (Send(to=check_address(to, "TO"), amount=parse_amount(amount)),))


@command.group(name="stake")
def stake() -> None:
    """Create a validator, delegate, undelegate, unjail."""


@stake.command(name="create-validator")
@click.option("--self-stake", "self_stake", required=True, help="stake to bond (uakt or akt)")
@click.option("--moniker", required=True, help=f"validator name (up to {MAX_MONIKER} chars)")
@tx_options
def create_validator(self_stake: str, moniker: str, **opts: Any) -> None:
    """Make the signing key a validator (its consensus key is the signing key)."""
    key = _key(opts["from_file"], opts["home_dir"])
    submit(opts, (CreateValidator(pubkey=key.public, moniker=moniker,
                                  self_stake=parse_amount(self_stake, "--self-stake")),), key)


def _validator(text: str, opts: dict[str, Any]) -> bytes:
    """A validator by hex public key, or by operator address (looked up on the node)."""
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    if text.startswith(crypto.ADDRESS_PREFIX + "1"):
        client = make_client(opts["node"], opts["home_dir"])
        for v in client.validators()["validators"]:
            if v["address"] == text:
                return bytes.fromhex(v["pubkey"])
        raise P2PAkashError(f"no validator with operator address {text} on {client.url}")
    raise click.BadParameter(f"{text!r} is neither a validator public key (64 hex characters)"
                             " nor an operator address", param_hint="VALIDATOR")


@stake.command(name="delegate")
@click.argument("validator")
@click.argument("amount")
@tx_options
def delegate(validator: str, amount: str, **opts: Any) -> None:
    """Delegate AMOUNT to VALIDATOR (public key hex or operator address)."""
    submit(opts, (Delegate(validator=_validator(validator, opts), amount=parse_amount(amount)),))


@stake.command(name="undelegate")
@click.argument("validator")
@click.argument("amount")
@tx_options
def undelegate(validator: str, amount: str, **opts: Any) -> None:
    """Undelegate AMOUNT from VALIDATOR (paid out after the unbonding period)."""
    submit(opts, (Undelegate(validator=_validator(validator, opts),
                             amount=parse_amount(amount)),))


@stake.command(name="unjail")
@tx_options
def unjail(**opts: Any) -> None:
    """Unjail the validator whose key signs the tx."""
    submit(opts, (Unjail(),))
