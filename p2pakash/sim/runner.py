"""The simulation runner: builds the scenario's network and runs it on virtual time.

Rules and invariants:
* Every node runs the real services over the in-memory transport: GossipService,
  ChainService (the ``FaultyChain`` subclass, honest unless a fault switches it), the real
  Mempool with the ``txs`` topic (``api.server.TxGossip``), the market's gossip validators
  and subscriptions (every node relays the market topics, as ``node.py`` does); providers
  add ProviderService, tenants TenantService and their workload (``sim/market.py``). One
  VerifyCache serves all nodes (verification is a pure function), and one decode memo per
  message family (commits, proposals and votes, market messages; decoding is one too).
* The genesis state is built once (``Ledger.init_genesis`` into a MemoryKV) and every
  in-memory node starts from its own copy of it; nodes with a data folder build their own.
  With ``providers.genesis`` it holds every provider's own signed ``CreateProvider`` (what
  its service would send at start: same config, GPU probe and attributes), so the market
  starts with block 1 and the providers send no registration.
* Randomness: every generator is ``determinism.rng_for(seed, label)`` with a fixed label
  (network, each node's gossip, workload, each byzantine node); keys derive from the seed.
  Time is the virtual ``EventClock``; block times come from it (plus a node's skew).
* Each node's services live in a cancel scope under the runner's one nursery; a crash
  cancels the scope (nothing flushed), a restart opens the node's storage again. Nodes with
  a crash fault keep their storage in SQLite files under a temporary folder; others in
  memory.
* Garbage collection: off while the nodes are built and started, which are then frozen
  out of it (``gc.freeze``); after that it runs at ``GC_THRESHOLDS``. Everything is
  restored when ``main`` returns.
* A per-node task reads the node's committed blocks: the invariant checker and the metrics
  see every commit at the virtual instant it happens. The first violation stops the run.
* The run ends at ``until`` virtual seconds, on a violation, or when the wall-clock limit
  is hit (checked once per virtual second by the monitor): services are cancelled, storage
  closed, and a ``SimResult`` is returned either way.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import trio

import p2pakash.market.ledger_market  # noqa: F401 - registers the market's ledger handlers
from p2pakash import wire
from p2pakash.api.server import TxGossip
from p2pakash.chain import SHARED_DECODED, ChainService
from p2pakash.config import ProviderConfig, topic_degree_params
from p2pakash.consensus.types import Block
from p2pakash.crypto import NodeID, PrivateKey, VerifyCache
from p2pakash.executor.fake import FakeEngine, FakeExecutor
from p2pakash.gossip.addr import PeerAddr
from p2pakash.gossip.memory import MemoryTransport
from p2pakash.gossip.peers import PeerParams
from p2pakash.gossip.pubsub import PubSubParams
from p2pakash.gossip.service import GossipService, GossipSettings, GossipStats
from p2pakash.ledger import (
    UAKT_PER_AKT,
    BlockResult,
    GenesisAccount,
    GenesisDoc,
    GenesisValidator,
    Ledger,
    Send,
    sign_tx,
)
from p2pakash.ledger.kv import MemoryKV
from p2pakash.market.ledger_market import LedgerView
from p2pakash.market.validators import TOPIC_BIDS, TOPIC_DECLINES, TOPIC_ORDERS, MarketValidators
from p2pakash.mempool import Mempool
from p2pakash.plugins.manager import PluginManager
from p2pakash.provider.service import ProviderService
from p2pakash.sim import market
from p2pakash.sim import network as simnet
from p2pakash.sim.determinism import deterministic_run, rng_for
from p2pakash.sim.faults import Behaviour, Event, FaultyChain, schedule
from p2pakash.sim.invariants import Checker
from p2pakash.sim.nodes import SimNode, SimResult
from p2pakash.sim.scenario import Scenario
from p2pakash.tenant import TenantService

MARKET_TOPICS = (TOPIC_ORDERS, TOPIC_BIDS, TOPIC_DECLINES)
SAMPLE_EVERY = 10.0  # virtual seconds between provider utilisation samples
PROVIDER_TICK = 1.0  # the provider's timer (reservation expiry, manifest deadlines, withdraw)
MARKET_DECODED = 4_096  # market messages in the shared decode memo
VALIDATOR_PEERS = 6  # persistent links each validator picks among validators (gossipsub D)
# Cyclic GC after start-up: Python's default (700, 10, 10) spent a third of a 300-node run's
# CPU in collections (most in ~0.4 s full ones); cycles are still collected, rarely. At
# 1,000 nodes a young collection of 50,000 took ~90 ms, six a block: 200,000 halves the
# scanning (docs/benchmarks.md, "scale-1000, round 3").
GC_THRESHOLDS = (200_000, 20, 20)

log = logging.getLogger(__name__)

Progress = Callable[["Runner"], None]


def _addr(index: int) -> str:
    return f"10.{index // 250}.{index % 250}.1:26656"


def _key(seed: int, label: str) -> PrivateKey:
    return PrivateKey.from_seed(hashlib.sha256(f"p2pakash-sim/{seed}/key/{label}".encode())
                                .digest())


class Runner:
    def __init__(self, scenario: Scenario, *, seed: int | None = None,
                 until: float | None = None, wall_limit: float | None = None,
                 progress: Progress | None = None) -> None:
        self.sc = scenario
        self.seed = scenario.seed if seed is None else seed
        self.until = scenario.duration if until is None else until
        self.wall_limit = scenario.wall_limit if wall_limit is None else wall_limit
        self.progress = progress
        self.result = SimResult(scenario=scenario, seed=self.seed, until=self.until)
        self.cache = VerifyCache(capacity=200_000)
        # like the VerifyCache: one decode per message per process
        self.commits = wire.DecodeMemo(64)
        self.consensus_decoded = wire.DecodeMemo(SHARED_DECODED)  # proposals and votes
        self.market_decoded = wire.DecodeMemo(MARKET_DECODED)  # orders, bids, declines
        self.network, self.latency = simnet.build_network(scenario.network,
                                                          rng_for(self.seed, "network"))
        self._pubsub = PubSubParams(
            topic_degree=topic_degree_params(scenario.network.topic_degree))
        self.checker = Checker(seed=self.seed, genesis_supply=0,
                               state_checks=scenario.invariants.state_checks)
        self.result.checker = self.checker
        self.users = [_key(self.seed, f"user/{i}") for i in range(scenario.workload.accounts)]
        self.templates = (market.load_templates(scenario.tenants.sdl_dir)
                          if scenario.tenants.count and scenario.tenants.arrival_rate else [])
        self.nodes: list[SimNode] = []
        self.by_name: dict[str, SimNode] = {}
        self._gpus = market.assign_gpus(scenario.providers, rng_for(self.seed, "providers/gpus"))
        prices = rng_for(self.seed, "providers/prices")
        self._price_factors = [market.price_factor(scenario.providers, prices)
                               for _ in range(scenario.providers.count)]
        self._plugins: dict[str, PluginManager] = {}  # loaded for the genesis, first start
        self.genesis = self._genesis()
        self.checker.genesis_supply = self.genesis.supply()
        self._genesis_state = MemoryKV()
        Ledger.init_genesis(self._genesis_state, self.genesis)
        self._stop: trio.Event | None = None
        self._healed_at: float | None = None
        self._last_commit_at = 0.0
        self._wall_start = 0.0

    # ------------------------------------------------------------ building

    def _genesis(self) -> GenesisDoc:
        sc = self.sc
        vkeys = [_key(self.seed, f"validator/{i}") for i in range(sc.validators.count)]
        accounts = [GenesisAccount(address=k.address, balance=sc.validators.balance * UAKT_PER_AKT)
                    for k in vkeys if sc.validators.balance]
        accounts += [GenesisAccount(address=k.address, balance=sc.workload.balance * UAKT_PER_AKT)
                     for k in self.users if sc.workload.balance]
        for names, amount in ((sc.provider_names(), sc.providers.balance),
                              (sc.tenant_names(), sc.tenants.budget)):
            accounts += [GenesisAccount(address=_key(self.seed, f"node/{name}").address,
                                        balance=amount * UAKT_PER_AKT)
                         for name in names if amount]
        self._vkeys = vkeys
        return GenesisDoc(chain_id=sc.chain.chain_id, genesis_time_ms=0,
                          accounts=tuple(accounts),
                          validators=tuple(GenesisValidator(
                              pubkey=k.public, stake=sc.validators.stake * UAKT_PER_AKT,
                              moniker=f"v{i}") for i, k in enumerate(vkeys)),
                          txs=self._provider_gentxs() if sc.providers.genesis else ())

    def _provider_gentxs(self) -> tuple[bytes, ...]:
        """Each provider's own signed ``CreateProvider``, as its service would send it at
        start (same host URI, attributes from the same config and GPU probe, bond), run
        at genesis: the service then finds itself registered and sends nothing."""
        index = {name: i for i, name in enumerate(self.sc.node_names())}
        out = []
        for name in self.sc.provider_names():
            key = _key(self.seed, f"node/{name}")
            cfg = self._provider_cfg(name, key.node_id, _addr(index[name]))
            plugins = self._plugins[name] = market.plugin_manager(cfg, f"providers ({name})")
            out.append(market.registration_tx(key, self.sc.chain.chain_id, cfg, plugins))
        return tuple(out)

    def _provider_cfg(self, name: str, node_id: NodeID, addr: str) -> ProviderConfig:
        i = int(name[1:])
        return market.provider_config(self.sc.providers, self._gpus[i], self._price_factors[i],
                                      f"p2p://{node_id}@{addr}")

    def _build_nodes(self, tmp: Path) -> None:
        sc = self.sc
        crashing = {f.node for f in sc.faults if f.kind == "crash"}
        byzantine = {f.node for f in sc.faults if f.kind in ("equivocate", "withhold")}
        for index, name in enumerate(sc.node_names()):
            if name.endswith("-twin"):
                vkey: PrivateKey | None = self._vkeys[int(name[1:-5])]
                key = _key(self.seed, f"node/{name}")
            elif name.startswith("v"):
                vkey = key = self._vkeys[int(name[1:])]
            else:
                vkey, key = None, _key(self.seed, f"node/{name}")
            node = SimNode(name=name, index=index, key=key, validator_key=vkey,
                           addr=_addr(index),
                           data_dir=tmp / name if name in crashing else None)
            if name in byzantine or name.endswith("-twin"):
                node.behaviour = Behaviour(rng=rng_for(self.seed, f"byzantine/{name}"))
            if name.startswith("p"):
                node.engine = FakeEngine()
                node.gpu = self._gpus[int(name[1:])]
                node.price_factor = self._price_factors[int(name[1:])]
            self.latency.place(node.node_id, index)
            self.nodes.append(node)
            self.by_name[name] = node
        self.result.nodes = self.nodes
        self._dial = self._topology()

    def _topology(self) -> dict[str, list[str]]:
        """The persistent-peer graph: each node picks its ring neighbour plus seeded random
        others; a link joins two nodes when either picked the other. Validators also pick
        ``VALIDATOR_PEERS`` other validators the same way: only validators take the vote
        topics (``consensus/routing.py``), so each needs validator neighbours to reach the
        others through the mesh. Each link is dialled by its later node (in scenario order),
        so nobody dials a node that is not started yet; a restarted node is dialled again by
        its later neighbours."""
        names = [n.name for n in self.nodes]
        edges: set[tuple[int, int]] = set()
        validators = [n.index for n in self.nodes if n.validator_key is not None]
        groups = [("peers", list(range(len(names))), self.sc.network.peers_per_node),
                  ("peers/validators", validators, VALIDATOR_PEERS)]
        for label, members, per_node in groups:
            want = min(per_node, len(members) - 1)
            for k, i in enumerate(members):
                if len(members) < 2:
                    break
                rng = rng_for(self.seed, f"{label}/{names[i]}")
                chosen = {members[(k + 1) % len(members)]}
                for j in rng.sample(members, len(members)):
                    if len(chosen) >= want:
                        break
                    chosen.add(j)
                chosen.discard(i)
                edges.update((min(i, j), max(i, j)) for j in chosen)
        dial: dict[str, list[str]] = {name: [] for name in names}
        for a, b in sorted(edges):
            dial[names[b]].append(names[a])
        return dial

    def _peers_of(self, node: SimNode) -> list[PeerAddr]:
        return [PeerAddr.parse(f"{self.by_name[n].node_id}@{self.by_name[n].addr}")
                for n in self._dial[node.name]]

    # ------------------------------------------------------------ node lifecycle

    async def start_node(self, nursery: trio.Nursery, node: SimNode) -> None:
        if node.done is not None:
            await node.done.wait()
        done = node.done = trio.Event()
        net = self.sc.network
        gossip = GossipService(
            transport=MemoryTransport(self.network, node.key, self.genesis.chain_id, node.addr),
            rng=rng_for(self.seed, f"gossip/{node.name}/{node.starts}"),
            peer_params=PeerParams(max_outbound=net.max_outbound, max_inbound=net.max_inbound,
                                   max_per_host=1000, pex_interval=1e9, backoff_base=0.2,
                                   backoff_max=2.0, ban_seconds=5.0,
                                   misbehave_ban_seconds=5.0),
            pubsub_params=self._pubsub, persistent=self._peers_of(node),
            settings=GossipSettings(tick_interval=1.0))
        chain = FaultyChain(gossip=gossip, key=node.validator_key, genesis=self.genesis,
                            data_dir=node.data_dir, timeouts=self.sc.chain.timeouts(),
                            verify_cache=self.cache, now_ms=node.clock.now_ms,
                            status_interval=self.sc.chain.status_interval,
                            catchup_delay=self.sc.chain.catchup_delay, name=node.name,
                            state=None if node.data_dir is not None else self._state_copy())
        chain.behaviour = node.behaviour
        chain.relay.decoder = self.commits
        chain.shared_decoded = self.consensus_decoded
        # ConsensusDriver's own parameter (no progress for this long: resend the round's
        # proposal and votes to every peer); ChainService does not take it.
        chain.driver.stall_interval = self.sc.chain.stall_interval
        mempool = Mempool.for_ledger(chain.ledger, verify=self.cache.verify)
        chain.mempool = mempool
        validators = market.SharedMarketValidators(
            memo=self.market_decoded, chain_id=self.genesis.chain_id,
            view=LedgerView(store=chain.ledger.store), now_ms=node.clock.now_ms, cache=self.cache)
        validators.install(gossip.pubsub)
        blocks = chain.subscribe_blocks()
        txs = TxGossip(gossip, mempool)
        for topic in MARKET_TOPICS:
            gossip.relay(topic)  # every node relays the market topics, as node.py
        provider = self._provider(node, gossip, chain, mempool, txs, validators)
        tenant = None
        if node.name.startswith("t"):
            tenant = TenantService(key=node.key, gossip=gossip, chain=chain, mempool=mempool,
                                   publish_tx=txs.publish, now_ms=node.clock.now_ms,
                                   verify_cache=self.cache)
            tenant.decoder = self.market_decoded
        node.gossip, node.chain, node.mempool = gossip, chain, mempool
        node.provider, node.tenant = provider, tenant
        node.starts += 1

        async def run_node(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            try:
                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as inner:
                        await inner.start(gossip.run)
                        await inner.start(txs.run)
                        if tenant is not None:
                            await inner.start(tenant.run)
                        await inner.start(chain.run)
                        if provider is not None:
                            await inner.start(provider.run)
                        if tenant is not None:
                            inner.start_soon(
                                market.tenant_driver, node.name, tenant, self.sc.tenants,
                                self.templates, rng_for(self.seed, f"tenant/{node.name}/"
                                                                   f"{node.starts}"),
                                self.result.market)
                        inner.start_soon(self._watch, node, chain, blocks)
                        task_status.started(scope)
            finally:
                self._keep_stats(node, gossip)
                chain.close()
                done.set()

        node.scope = await nursery.start(run_node)

    def _state_copy(self) -> MemoryKV:
        kv = MemoryKV()
        for key, value in self._genesis_state.iterate(b""):
            kv.set(key, value)
        return kv

    def _provider(self, node: SimNode, gossip: GossipService, chain: ChainService,
                  mempool: Mempool, txs: TxGossip,
                  validators: MarketValidators) -> ProviderService | None:
        if node.engine is None:
            return None
        cfg = self._provider_cfg(node.name, node.node_id, node.addr)
        plugins = self._plugins.pop(node.name, None)  # the genesis loaded them: first start
        if plugins is None:
            plugins = market.plugin_manager(cfg, f"providers ({node.name})")
        return ProviderService(
            key=node.key, cfg=cfg, gossip=gossip, chain=chain, mempool=mempool,
            publish=txs.publish, plugins=plugins,
            executor=FakeExecutor(node.engine), host_uri=cfg.host_uri,
            state_dir=None if node.data_dir is None else node.data_dir / "provider",
            now_ms=node.clock.now_ms, tick=PROVIDER_TICK, market=validators)

    def _keep_stats(self, node: SimNode, gossip: GossipService) -> None:
        for field in attrs.fields(GossipStats):
            setattr(node.past, field.name,
                    getattr(node.past, field.name) + getattr(gossip.stats, field.name))
        for field in attrs.fields(type(gossip.pubsub.stats)):
            node.past_pubsub[field.name] = (node.past_pubsub.get(field.name, 0)
                                            + getattr(gossip.pubsub.stats, field.name))
        node.gossip = None

    def crash(self, node: SimNode) -> None:
        if node.scope is not None:
            node.scope.cancel()

    async def _watch(self, node: SimNode, chain: ChainService,
                     blocks: trio.MemoryReceiveChannel[tuple[Block, BlockResult]]) -> None:
        r = self.result
        async for block, result in blocks:
            now = trio.current_time()
            h = block.height
            r.commit_times.setdefault(h, {})[node.name] = now
            if h not in r.block_hashes:
                r.block_hashes[h] = block.hash()
                r.block_times_ms[h] = block.header.time_ms
                r.txs_committed += len(block.txs)
            self._last_commit_at = now
            self.checker.on_commit(node.name, chain, block, result, now)
            if self.checker.failed and self._stop is not None:
                self._stop.set()

    # ------------------------------------------------------------ drivers

    async def _events(self, nursery: trio.Nursery, events: list[Event]) -> None:
        ids = {n.name: n.node_id for n in self.nodes}
        for ev in events:
            await trio.sleep_until(ev.at)
            log.info("t=%.3f event %s %s", ev.at, ev.action, ev.node)
            node = self.by_name.get(ev.node)
            if ev.action == "partition":
                simnet.partition(self.network, ev.groups, ids)
            elif ev.action == "heal":
                self.network.heal()
                self._healed_at = trio.current_time()
            elif ev.action in ("crash", "twin_stop") and node is not None:
                self.crash(node)
            elif ev.action in ("restart", "twin_start") and node is not None:
                if not node.running:
                    await self.start_node(nursery, node)
            elif ev.action == "skew" and node is not None:
                node.clock.skew_ms = ev.value
            elif ev.action in ("equivocate", "withhold") and node is not None:
                assert node.behaviour is not None
                setattr(node.behaviour, ev.action, bool(ev.value))
            elif ev.action == "containers_die" and node is not None:
                self._containers(node, down=bool(ev.value))

    def _containers(self, node: SimNode, *, down: bool) -> None:
        """Every container of the provider exits (137) and its engine stops answering
        (``down``), or the engine comes back."""
        engine = node.engine
        assert engine is not None
        if down:
            for lease, containers in sorted(engine.leases.items()):
                for service, replica in sorted(containers):
                    engine.exit(lease, service, replica, 137)
                    self.result.market.containers_killed += 1
        engine.down = down

    async def _workload(self) -> None:
        w = self.sc.workload
        if w.transfer_rate <= 0 or len(self.users) < 2:
            return
        rng = rng_for(self.seed, "workload")
        chain_id = self.genesis.chain_id
        while True:
            await trio.sleep(rng.expovariate(w.transfer_rate))
            sender, receiver = rng.sample(self.users, 2)
            running = [n for n in self.nodes if n.running and n.mempool is not None]
            if not running:
                continue
            node = running[rng.randrange(len(running))]
            assert node.chain is not None and node.mempool is not None and node.gossip
            seq = (node.chain.ledger.account(sender.address).sequence
                   + node.mempool.pending_from(sender.address))
            tx = sign_tx(sender, chain_id, sequence=seq,
                         msgs=(Send(to=receiver.address, amount=w.transfer_amount),)).encode()
            if node.mempool.add(tx).accepted:
                node.gossip.publish("txs", tx)
                self.result.txs_submitted += 1

    async def _monitor(self) -> None:
        r = self.result
        next_sample = 0.0
        while True:
            now = trio.current_time()
            heights = [n.height for n in self.nodes if n.running] or [0]
            r.samples.append((now, min(heights), max(heights)))
            r.virtual_seconds = now
            if self._healed_at is not None:
                self.checker.liveness(healed_at=self._healed_at,
                                      last_commit_at=self._last_commit_at,
                                      resume_within=self.sc.invariants.resume_within,
                                      now=now, height=max(heights))
                if self._last_commit_at >= self._healed_at:
                    self._healed_at = None
                if self.checker.failed and self._stop is not None:
                    self._stop.set()
            if now >= next_sample and self.sc.providers.count:
                next_sample = now + SAMPLE_EVERY
                r.market.sample(now, {n.name: n.provider for n in self.nodes
                                      if n.provider is not None and n.running})
            if self.progress is not None:
                self.progress(self)
            if self.wall_limit and time.monotonic() - self._wall_start > self.wall_limit:
                r.stopped_by = "wall_limit"
                if self._stop is not None:
                    self._stop.set()
            await trio.sleep(1.0)

    def _final_validators(self) -> None:
        """Stake and jail state of every genesis validator on the highest running node."""
        running = [n for n in self.nodes if n.running and n.chain is not None]
        if not running:
            return
        best = max(running, key=lambda n: (n.height, -n.index))
        assert best.chain is not None
        for i, key in enumerate(self._vkeys):
            rec = best.chain.ledger.validator(key.public)
            if rec is not None:
                self.result.validators[f"v{i}"] = {"tokens": rec.tokens, "jailed": rec.jailed,
                                                   "tombstoned": rec.tombstoned}
        self.result.revenue = market.revenue(best.chain.ledger.store, best.height, {
            n.name: n.key.address for n in self.nodes if n.engine is not None})

    async def main(self) -> SimResult:
        self._stop = trio.Event()
        self._wall_start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="p2pakash-sim-") as tmp, _gc_tuned() as gc_on:
            self._build_nodes(Path(tmp))
            twins = {f"{f.node}-twin": f.at for f in self.sc.faults if f.kind == "twin"}
            async with trio.open_nursery() as nursery:
                await nursery.start(self.network.run_clock)  # before any transport
                for node in self.nodes:
                    if twins.get(node.name, 0.0) == 0.0:
                        await self.start_node(nursery, node)
                gc.freeze()  # the start-up objects live on: keep them out of GC scans
                if gc_on:
                    gc.set_threshold(*GC_THRESHOLDS)
                    gc.enable()
                nursery.start_soon(self._events, nursery,
                                   [e for e in schedule(self.sc)
                                    if not (e.action == "twin_start" and e.at == 0.0)])
                nursery.start_soon(self._workload)
                nursery.start_soon(self._monitor)
                with trio.move_on_at(self.until):
                    await self._stop.wait()
                if self.checker.failed:
                    self.result.stopped_by = "violation"
                self.result.virtual_seconds = trio.current_time()
                self._final_validators()
                nursery.cancel_scope.cancel()
        self.result.wall_seconds = time.monotonic() - self._wall_start
        self.result.network = {"frames_sent": self.network.frames_sent,
                               "bytes_sent": self.network.bytes_sent,
                               "frames_dropped": self.network.frames_dropped}
        return self.result


@contextlib.contextmanager
def _gc_tuned() -> Iterator[bool]:
    """The cyclic GC is off while ``main`` builds and starts the nodes, which it then freezes
    (``gc.freeze``) before collecting again at ``GC_THRESHOLDS`` if it was on (the value
    yielded); on the way out the GC gets the frozen objects back and its own settings."""
    enabled, thresholds = gc.isenabled(), gc.get_threshold()
    gc.disable()
    try:
        yield enabled
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        if enabled:
            gc.enable()
        else:
            gc.disable()


def run(scenario: Scenario, *, seed: int | None = None, until: float | None = None,
        wall_limit: float | None = None, progress: Progress | None = None) -> SimResult:
    """Run ``scenario`` deterministically (see ``determinism.py``) and return the result."""
    runner = Runner(scenario, seed=seed, until=until, wall_limit=wall_limit, progress=progress)
    return deterministic_run(runner.main, seed=runner.seed)


__all__ = ["Runner", "SimNode", "SimResult", "run"]
