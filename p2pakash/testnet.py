"""``testnet init``: a genesis and one home per node for a local (or LAN) testnet.

Rules and invariants:
* ``init_testnet`` writes into a folder that is absent or empty and overwrites nothing; it
  checks every input (counts, chain ID, ports, executor) before writing the first file.
* Node names are ``validator<i>``, ``provider<i>``, ``tenant<i>``, in that order; node ``k``
  of the list listens on ``base_port + 2k`` (p2p) and ``base_port + 2k + 1`` (API), so
  every port is distinct. APIs listen on 127.0.0.1 only (writes stay local). Every node
  lists up to four validators as persistent peers, taken round the validator list from
  the node's own position: validators peer with validators (only they carry the consensus
  vote topics, ``consensus/routing.py``) and no validator is every node's hub; PEX finds
  the rest.
* The genesis bonds ``VALIDATOR_STAKE`` for each validator and funds every node's account
  plus a faucet account (``faucet_key.json``); the same file goes into every home. Key
  files are 0600 (``crypto.save_key``).
* ``testnet.json`` describes the network for ``testnet start``/``stop``, the demo and the
  doctor; ``seeds.txt`` is the published seeds file (one ``ID@HOST:PORT`` per line) that
  joining nodes use (docs/join-testnet.md).
* ``fetch_genesis`` reads a published genesis from a file or an http(s) URL (bounded in
  size and time) and, given the network's published hash, refuses any other genesis.
* Provider ``i`` gets ``PROVIDER_ATTRIBUTES[i % 2]``: the first matches
  ``configs/demo/deploy.yaml`` (region us-west), the second does not (eu-central).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from p2pakash import crypto, home
from p2pakash.config import CHAIN_ID_RE, dump_config, structure_config
from p2pakash.errors import ConfigError
from p2pakash.ledger.genesis import (
    GenesisAccount,
    GenesisDoc,
    GenesisValidator,
    check_doc,
    load_genesis,
    save_genesis,
)
from p2pakash.ledger.params import UAKT_PER_AKT

LAYOUT_FILE = "testnet.json"
SEEDS_FILE = "seeds.txt"
FAUCET_KEY = "faucet_key.json"
PODMAN_DIR = "podman"
ROLES = ("validator", "provider", "tenant")
EXECUTORS = ("podman", "fake")
VALIDATOR_STAKE = 10 * UAKT_PER_AKT
NODE_BALANCE = 1_000 * UAKT_PER_AKT
FAUCET_BALANCE = 1_000_000 * UAKT_PER_AKT
MAX_NODES = 200
MAX_GENESIS_BYTES = 16 * 1024 * 1024
PROVIDER_ATTRIBUTES: tuple[dict[str, str], ...] = (
    {"region": "us-west", "tier": "community", "organization": "p2pakash-demo"},
    {"region": "eu-central", "tier": "community", "organization": "p2pakash-demo"},
)
# uakt per block: per CPU core, per GiB of memory, per GiB of storage (linear pricing).
PROVIDER_RATES: tuple[dict[str, Any], ...] = (
    {"cpu": "2000", "memory": "500", "storage": {"ephemeral": "100"}},
    {"cpu": "1500", "memory": "400", "storage": {"ephemeral": "100"}},
)


@attrs.frozen(kw_only=True)
class NodeEntry:
    name: str
    role: str
    home: str  # relative to the testnet folder
    node_id: str
    address: str
    p2p: str  # host:port
    api: str  # host:port

    @property
    def peer(self) -> str:
        return f"{self.node_id}@{self.p2p}"

    @property
    def url(self) -> str:
        return f"http://{self.api}"


@attrs.frozen(kw_only=True)
class Layout:
    """``testnet.json``: what ``testnet init`` made."""

    root: Path
    chain_id: str
    genesis_hash: str
    executor: str
    nodes: tuple[NodeEntry, ...]
    faucet_address: str

    def node(self, name: str) -> NodeEntry:
        for entry in self.nodes:
            if entry.name == name:
                return entry
        raise ConfigError(f"{self.root / LAYOUT_FILE}: no node named {name!r}")

    def home(self, entry: NodeEntry) -> Path:
        return self.root / entry.home

    def by_role(self, role: str) -> list[NodeEntry]:
        return [n for n in self.nodes if n.role == role]

    @property
    def podman_dir(self) -> Path:
        return self.root / PODMAN_DIR

    @property
    def faucet_key(self) -> Path:
        return self.root / FAUCET_KEY

    def to_json(self) -> dict[str, Any]:
        return {"chain_id": self.chain_id, "genesis_hash": self.genesis_hash,
                "executor": self.executor, "faucet_address": self.faucet_address,
                "nodes": [attrs.asdict(n) for n in self.nodes]}


def load_layout(root: Path) -> Layout:
    """Read DIR/testnet.json; ConfigError naming the file when it is absent or malformed."""
    path = root / LAYOUT_FILE
    try:
        doc = json.loads(path.read_text())
        nodes = tuple(NodeEntry(**n) for n in doc["nodes"])
        return Layout(root=root.absolute(), chain_id=str(doc["chain_id"]),
                      genesis_hash=str(doc["genesis_hash"]), executor=str(doc["executor"]),
                      nodes=nodes, faucet_address=str(doc["faucet_address"]))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; is {root} a folder made by 'p2pakash testnet "
                          f"init'?") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a testnet description ({type(exc).__name__}: "
                          f"{exc})") from None


def _check_inputs(out: Path, validators: int, providers: int, tenants: int, chain_id: str,
                  base_port: int, executor: str) -> int:
    if validators < 1:
        raise ConfigError(f"--validators: a testnet needs at least one validator, got "
                          f"{validators}")
    if providers < 0 or tenants < 0:
        raise ConfigError("--providers and --tenants must not be negative")
    total = validators + providers + tenants
    if total > MAX_NODES:
        raise ConfigError(f"at most {MAX_NODES} nodes per testnet, asked for {total}")
    if not CHAIN_ID_RE.fullmatch(chain_id):
        raise ConfigError(f"--chain-id: expected 1-50 characters of [a-zA-Z0-9._-], got "
                          f"{chain_id!r}")
    if not 1024 <= base_port <= 65535 - 2 * total:
        raise ConfigError(f"--base-port: {base_port} leaves no room for {2 * total} ports "
                          f"(use 1024..{65535 - 2 * total})")
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor: expected one of {', '.join(EXECUTORS)}, got "
                          f"{executor!r}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: already exists and is not an empty folder; refusing to "
                          f"overwrite it")
    return total


def _node_config(entry: NodeEntry, *, chain_id: str, peers: list[str], executor: str,
                 provider_index: int, podman_socket: str, base_dir: Path) -> str:
    data: dict[str, Any] = {
        "chain_id": chain_id, "moniker": entry.name, "home": ".",
        "p2p": {"listen": entry.p2p, "persistent_peers": peers, "seeds": []},
        "api": {"listen": entry.api},
    }
    if entry.role == "provider":
        k = provider_index % len(PROVIDER_ATTRIBUTES)
        data["provider"] = {
            "attributes": dict(PROVIDER_ATTRIBUTES[k]), "executor": executor,
            "podman_socket": podman_socket if executor == "podman" else "",
            "cpu": 4.0, "memory": "8Gi", "storage": {"ephemeral": "100Gi"},
            "gpu_probes": ["nvml"], "manifest_timeout": 60.0, "withdraw_period": 30.0,
            "linear": PROVIDER_RATES[k],
        }
    cfg = structure_config(data, source=f"testnet init: {entry.name}", base_dir=base_dir)
    return dump_config(attrs.evolve(cfg, home=Path(".")))


def init_testnet(out: Path, *, validators: int, providers: int = 0, tenants: int = 0,
                 chain_id: str = "p2pakash-testnet", base_port: int = 26600,
                 executor: str = "fake", host: str = "127.0.0.1",
                 hosts: Sequence[str] | None = None,
                 genesis_time_ms: int | None = None) -> Layout:
    """Create the testnet folder ``out`` (see the module rules); returns its layout.

    Node ``k`` listens for peers on ``hosts[k]`` when given (one machine or network
    namespace per node), else on ``host``; every API listens on 127.0.0.1 (safe default)."""
    total = _check_inputs(out, validators, providers, tenants, chain_id, base_port, executor)
    if hosts is not None and len(hosts) != total:
        raise ConfigError(f"hosts: {len(hosts)} given for {total} nodes")
    root = out.absolute()
    roles = (["validator"] * validators + ["provider"] * providers + ["tenant"] * tenants)
    counts: dict[str, int] = {}
    keys: list[crypto.PrivateKey] = []
    entries: list[NodeEntry] = []
    for k, role in enumerate(roles):
        index = counts.get(role, 0)
        counts[role] = index + 1
        key = crypto.PrivateKey.generate()
        keys.append(key)
        name = f"{role}{index}"
        entries.append(NodeEntry(name=name, role=role, home=name, node_id=key.node_id,
                                 address=key.address,
                                 p2p=f"{hosts[k] if hosts else host}:{base_port + 2 * k}",
                                 api=f"127.0.0.1:{base_port + 2 * k + 1}"))
    faucet = crypto.PrivateKey.generate()
    doc = GenesisDoc(
        chain_id=chain_id,
        genesis_time_ms=int(time.time() * 1000) if genesis_time_ms is None else genesis_time_ms,
        accounts=(*(GenesisAccount(address=e.address, balance=NODE_BALANCE) for e in entries),
                  GenesisAccount(address=faucet.address, balance=FAUCET_BALANCE)),
        validators=tuple(GenesisValidator(pubkey=keys[k].public, stake=VALIDATOR_STAKE,
                                          moniker=entries[k].name)
                         for k in range(validators)))
    doc.validate(str(root / home.GENESIS_FILE))
    validator_peers = [e.peer for e in entries[:validators]]
    socket = f"unix://{root / PODMAN_DIR / 'podman.sock'}"
    texts = []
    provider_index = 0
    for k, entry in enumerate(entries):
        ring = [validator_peers[(k + 1 + j) % validators] for j in range(validators)]
        peers = [p for p in ring if p != entry.peer][:4]
        texts.append(_node_config(entry, chain_id=chain_id, peers=peers, executor=executor,
                                  provider_index=provider_index, podman_socket=socket,
                                  base_dir=root / entry.home))
        provider_index += entry.role == "provider"
    layout = Layout(root=root, chain_id=chain_id, genesis_hash=doc.genesis_hash().hex(),
                    executor=executor, nodes=tuple(entries), faucet_address=faucet.address)
    # Every input is checked: write.
    root.mkdir(parents=True, exist_ok=True)
    save_genesis(root / home.GENESIS_FILE, doc)
    crypto.save_key(root / FAUCET_KEY, faucet)
    for entry, key, text in zip(entries, keys, texts, strict=True):
        node_home = root / entry.home
        home.init_home(node_home, config_toml=text, key=key)
        save_genesis(home.genesis_path(node_home), doc)
    (root / SEEDS_FILE).write_text(
        f"# seeds of {chain_id} (genesis hash {layout.genesis_hash})\n"
        + "".join(f"{peer}\n" for peer in validator_peers))
    (root / LAYOUT_FILE).write_text(json.dumps(layout.to_json(), indent=1) + "\n")
    assert len(entries) == total
    return layout


def fetch_genesis(source: str, *, expected_hash: str = "", timeout: float = 30.0
                  ) -> GenesisDoc:
    """The genesis at ``source`` (a path or an http(s) URL), checked; ConfigError naming the
    source when it cannot be read, is invalid, or its hash is not ``expected_hash``."""
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=timeout) as resp:
                data = resp.read(MAX_GENESIS_BYTES + 1)
        except (OSError, urllib.error.URLError) as exc:
            raise ConfigError(f"{source}: cannot fetch the genesis: "
                              f"{getattr(exc, 'reason', exc)}") from None
        if len(data) > MAX_GENESIS_BYTES:
            raise ConfigError(f"{source}: genesis larger than {MAX_GENESIS_BYTES} bytes")
        try:
            doc = check_doc(json.loads(data), source)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: not a JSON genesis ({exc})") from None
    else:
        doc = load_genesis(Path(source))
    got = doc.genesis_hash().hex()
    if expected_hash and got != expected_hash.strip().lower():
        raise ConfigError(f"{source}: genesis hash {got} differs from the network's "
                          f"{expected_hash.strip().lower()}; refusing it (wrong file or "
                          f"wrong network)")
    return doc
