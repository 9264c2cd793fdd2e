"""``p2pakash gossip publish|subscribe``: debug tools that join the network briefly.

Each command starts a short-lived node with a fresh key on an ephemeral port, connects
to one peer (``--peer ID@host:port``, or the node a config file describes), and either
publishes one signed note or prints the notes it receives.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import click
import trio

from p2pakash import wire
from p2pakash.config import load_config
from p2pakash.crypto import PrivateKey, VerifyCache, load_key
from p2pakash.errors import DecodeError
from p2pakash.gossip import notes
from p2pakash.gossip.addr import PeerAddr
from p2pakash.gossip.peers import PeerParams
from p2pakash.gossip.pubsub import PubSubParams
from p2pakash.gossip.service import GossipService
from p2pakash.gossip.tcp import TcpTransport


def _target(config: Path | None, peer: str | None, chain_id: str | None) -> tuple[PeerAddr, str]:
    if config is not None:
        cfg = load_config(config)
        key = load_key(cfg.key_path)
        return PeerAddr.parse(f"{key.node_id}@{cfg.p2p.advertised}"), cfg.chain_id
    if peer is None or chain_id is None:
        raise click.UsageError("give --config FILE, or both --peer ID@HOST:PORT and --chain-id")
    try:
        return PeerAddr.parse(peer), chain_id
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--peer") from None


def _service(key: PrivateKey, chain_id: str, peer: PeerAddr) -> GossipService:
    service = GossipService(
        transport=TcpTransport(key, chain_id, "127.0.0.1:0"),
        rng=random.Random(),
        peer_params=PeerParams(max_outbound=1, max_inbound=0),
        pubsub_params=PubSubParams(),
        persistent=[peer],
    )
    service.set_validator(notes.TOPIC, notes.note_validator(chain_id, VerifyCache()))
    return service


_common = [
    click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False),
                 help="config file of the node to connect through"),
    click.option("--peer", help="ID@HOST:PORT of the node to connect through"),
    click.option("--chain-id", help="chain ID (with --peer)"),
    click.option("--timeout", type=float, default=10.0, show_default=True,
                 help="seconds to wait"),
]


def _with_common(fn: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(_common):
        fn = option(fn)
    return fn


@click.group(name="gossip")
def command() -> None:
    """Debug tools: publish or watch signed notes on the gossip network."""


@command.command()
@click.argument("text")
@_with_common
def publish(text: str, config: Path | None, peer: str | None, chain_id: str | None,
            timeout: float) -> None:
    """Publish TEXT as a signed note on the 'notes' topic."""
    target, chain = _target(config, peer, chain_id)
    key = PrivateKey.generate()

    async def run() -> None:
        service = _service(key, chain, target)
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            service.subscribe(notes.TOPIC)
            with trio.move_on_after(timeout) as scope:
                while not service.pubsub.topic_peers(notes.TOPIC):  # noqa: ASYNC110 - no event
                    await trio.sleep(0.02)
            if scope.cancelled_caught:
                raise click.ClickException(f"could not reach {target} within {timeout} s")
            note = notes.make_note(key, chain, text, timestamp_ms=int(time.time() * 1000),
                                   nonce=random.getrandbits(62))
            msg_id = service.publish(notes.TOPIC, wire.encode(note))
            sent = service.stats.frames_out
            with trio.move_on_after(2):
                while service.stats.frames_out == sent:  # noqa: ASYNC110 - no event
                    await trio.sleep(0.01)
            await trio.sleep(0.05)
            click.echo(f"published note {msg_id.hex()[:16]} as {key.address}")
            nursery.cancel_scope.cancel()

    trio.run(run)


@command.command()
@click.option("--count", type=int, default=0, help="exit after COUNT notes (0: never)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per note")
@_with_common
def subscribe(count: int, as_json: bool, config: Path | None, peer: str | None,
              chain_id: str | None, timeout: float) -> None:
    """Print signed notes as they arrive (until --count notes or --timeout seconds)."""
    target, chain = _target(config, peer, chain_id)
    key = PrivateKey.generate()

    async def run() -> None:
        service = _service(key, chain, target)
        received = 0
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            channel = service.subscribe(notes.TOPIC)
            with trio.move_on_after(timeout):
                async for item in channel:
                    try:
                        note = wire.decode(item.data, notes.Note)
                    except DecodeError:
                        continue
                    if as_json:
                        click.echo(json.dumps({"author": note.author_address, "text": note.text,
                                               "timestamp_ms": note.timestamp_ms,
                                               "msg_id": item.msg_id.hex()}))
                    else:
                        click.echo(f"{note.author_address}: {note.text}")
                    received += 1
                    if count and received >= count:
                        break
            nursery.cancel_scope.cancel()
        if count and received < count:
            raise click.ClickException(f"received {received} of {count} notes in {timeout} s")

    trio.run(run)
