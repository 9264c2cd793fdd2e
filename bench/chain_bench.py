#!/usr/bin/env python3
"""Chain benchmark: 4 validator processes on 127.0.0.1 and a load generator process.

Setup: four homes from ``p2pakash node init`` (node0 seeds the others), a genesis with the
four node keys as validators (10 AKT each) and ``--accounts`` funded accounts (keys derived
from fixed seeds), and four ``p2pakash node start`` processes with the default config.

The load generator is a separate process (this file with ``--loadgen SPEC``):
  idle   : follows node0's ``/events`` SSE stream for ``--idle`` seconds with no load and
           reports the block interval (from the headers' times and from arrival times).
  presign: signs ``--txs`` ``Send`` txs up front: account a signs sequences 0, 1, ... in
           turn, so no account's sequence serialises the load.
  load   : ``--conns`` keep-alive HTTP connections per validator, each owning a disjoint set
           of accounts (account a goes to node a % 4, so a sender's txs reach one mempool in
           order); each connection POSTs its txs, ``--batch`` at a time to ``/txs`` (0: one
           per ``POST /tx``; the body a CBOR array of tx bytes, or ``--body json``: hex in
           JSON), as fast as the node answers or paced to ``--rate`` tx/s in all; txs
           refused as "mempool full" are resent from the first such one (``full_from``)
           after 20 ms (at most 500 times in a row).
  commit : the SSE thread stamps each tx when node0 reports its block; the run ends when
           every admitted tx is committed or after ``--duration`` seconds.
Reported: admitted and finalized tx/s (finalized txs / (last commit - first submit)), the
submit-to-commit latency p50/p90/p99/max, blocks and txs per block under load, the idle
block interval, each process's CPU seconds. ``--profile`` records a validator with py-spy
during the load and prints its top self-time frames (file:line) and inclusive functions.

Every loop is bounded in count and time; every process started here is stopped at the end.
Benchmark only: never a test.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import http.client
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import cbor2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from p2pakash import crypto  # noqa: E402
from p2pakash.ledger.txs import Send, sign_tx  # noqa: E402

CHAIN = "chain-bench"
BALANCE = 10**12
Json = dict[str, Any]


def account_key(i: int) -> crypto.PrivateKey:
    return crypto.PrivateKey.from_seed(hashlib.sha256(f"bench-account-{i}".encode()).digest())


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process from /proc (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ load generator


class Events:
    """Follows one node's /events stream on a thread; stamps blocks and txs on arrival."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.blocks: list[tuple[float, int, int, int]] = []  # (arrival, height, time_ms, n)
        self.committed: dict[str, tuple[float, int]] = {}  # tx hash -> (arrival, code)
        self.stop = threading.Event()
        self.error = ""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with urllib.request.urlopen(self.url + "/events", timeout=30) as resp:
                event = ""
                for raw in resp:
                    if self.stop.is_set():
                        return
                    line = raw.decode().rstrip("\n")
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "block":
                        now = time.monotonic()
                        doc = json.loads(line[6:])
                        for tx in doc["txs"]:
                            self.committed[tx["hash"]] = (now, tx["code"])
                        self.blocks.append((now, doc["height"], doc["time_ms"], doc["num_txs"]))
        except Exception as exc:  # reported in the result, never hidden
            if not self.stop.is_set():
                self.error = f"{type(exc).__name__}: {exc}"


class Submitter(threading.Thread):
    """One keep-alive connection POSTing its txs in order: one per ``POST /tx`` (batch 0)
    or ``batch`` at a time to ``POST /txs``; ``rate`` > 0 paces it to that many tx/s."""

    def __init__(self, port: int, txs: list[tuple[str, bytes]], deadline: float, *,
                 batch: int = 0, rate: float = 0.0, body: str = "cbor") -> None:
        super().__init__(daemon=True)
        self.port = port
        self.txs = txs
        self.deadline = deadline
        self.batch = batch
        self.rate = rate
        self.content_type = "application/cbor" if body == "cbor" else "application/json"
        self.sent: dict[str, float] = {}  # hash -> submit time
        self.refused: collections.Counter[str] = collections.Counter()
        self.full_retries = 0
        self.requests = 0
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def _post(self, path: str, body: bytes) -> tuple[int, Json] | None:
        self.requests += 1
        try:
            ctype = self.content_type if path == "/txs" else "application/json"
            self.conn.request("POST", path, body, {"content-type": ctype})
            resp = self.conn.getresponse()
            return resp.status, json.loads(resp.read())
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.refused[f"connection: {exc}"] += 1
            self.conn.close()
            self.conn = self._connect()
            time.sleep(0.05)
            return None

    def run(self) -> None:
        step = max(1, self.batch)
        t0 = time.monotonic()
        i = 0
        retries = 0
        while i < len(self.txs) and retries < 500 and time.monotonic() < self.deadline:
            if self.rate > 0:  # pace: the i-th tx leaves no earlier than t0 + i / rate
                wait = t0 + i / self.rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            chunk = self.txs[i:i + step]
            start = time.monotonic()
            if self.batch:
                if self.content_type == "application/cbor":
                    body = cbor2.dumps([raw for _, raw in chunk])
                else:
                    body = ('{"txs":["' + '","'.join(raw.hex() for _, raw in chunk)
                            + '"]}').encode()
                answer = self._post("/txs", body)
                results = [] if answer is None else _per_tx(len(chunk), answer[1])
            else:
                answer = self._post("/tx", ('{"tx":"' + chunk[0][1].hex() + '"}').encode())
                results = [] if answer is None else [answer[1]]
            done = 0
            for (tx_hash, _), res in zip(chunk, results, strict=False):
                if res.get("status") == "full":
                    break  # this one and every later one: the pool was full
                if res.get("accepted") or res.get("status") == "duplicate":
                    self.sent[tx_hash] = start
                else:
                    self.refused[str(res.get("reason") or res.get("error", "")).split(":")[0]] += 1
                done += 1
            i += done
            if done < len(chunk):
                self.full_retries += 1
                retries += 1
                time.sleep(0.02)
            else:
                retries = 0
        self.conn.close()


def _per_tx(count: int, answer: Json) -> list[Json]:
    """``POST /txs`` lists only the refused txs (by index), and none after ``full_from``
    (not tried: the pool was full): one answer per tx."""
    if "refused" not in answer:
        return []
    out: list[Json] = [{"accepted": True}] * count
    for res in answer["refused"]:
        out[res["index"]] = res
    full_from = answer.get("full_from")
    if isinstance(full_from, int):
        out[full_from:] = [{"status": "full"}] * (count - full_from)
    return out


def loadgen(spec: Json) -> Json:
    ports: list[int] = spec["api_ports"]
    result: Json = {}
    # Idle block interval (no load).
    idle = Events(f"http://127.0.0.1:{ports[0]}")
    time.sleep(spec["idle"])
    idle.stop.set()
    blocks = idle.blocks[1:]  # the first may have been in flight when we connected
    if len(blocks) >= 2:
        header_gaps = [(b[2] - a[2]) / 1000 for a, b in itertools.pairwise(blocks)]
        arrival_gaps = [b[0] - a[0] for a, b in itertools.pairwise(blocks)]
        result["idle"] = {"blocks": len(blocks), "interval_header_median_s":
                          statistics.median(header_gaps),
                          "interval_header_mean_s": statistics.mean(header_gaps),
                          "interval_arrival_median_s": statistics.median(arrival_gaps)}
    # Pre-sign: account a, sequence s; interleaved so every account gets a turn.
    t0 = time.process_time()
    n_acc, n_txs = spec["accounts"], spec["txs"]
    keys = [account_key(i) for i in range(n_acc)]
    dest = crypto.PrivateKey.from_seed(b"\x07" * 32).address
    threads = len(ports) * spec["conns"]
    per_thread: list[list[tuple[str, bytes]]] = [[] for _ in range(threads)]
    for k in range(n_txs):
        a, seq = k % n_acc, k // n_acc
        tx = sign_tx(keys[a], CHAIN, sequence=seq, msgs=(Send(to=dest, amount=1),))
        # account a -> node a % 4, connection (a // 4) % conns on that node
        node = a % len(ports)
        per_thread[node * spec["conns"] + (a // len(ports)) % spec["conns"]].append(
            (tx.hash().hex(), tx.encode()))
    result["presign_cpu_s"] = time.process_time() - t0
    # Load.
    events = Events(f"http://127.0.0.1:{ports[0]}")
    time.sleep(0.5)  # the stream is open before the first submit
    Path(spec["started_file"]).write_text("load")
    start = time.monotonic()
    deadline = start + spec["duration"]
    subs = [Submitter(ports[i // spec["conns"]], txs, deadline, batch=spec["batch"],
                      rate=spec["rate"] / threads, body=spec.get("body", "cbor"))
            for i, txs in enumerate(per_thread)]
    cpu0 = time.process_time()
    for s in subs:
        s.start()
    for s in subs:
        s.join(timeout=max(0.0, deadline - time.monotonic()) + 5)
    submitted_at = time.monotonic()
    sent: dict[str, float] = {}
    for s in subs:
        sent.update(s.sent)
    while time.monotonic() < deadline + 10:  # let the tail commit (bounded)
        if all(h in events.committed for h in sent):
            break
        time.sleep(0.05)
    events.stop.set()
    result["loadgen_cpu_s"] = time.process_time() - cpu0
    done = {h: events.committed[h] for h in sent if h in events.committed}
    ok = [h for h, (_, code) in done.items() if code == 0]
    lat = [events.committed[h][0] - sent[h] for h in ok]
    last_commit = max((events.committed[h][0] for h in ok), default=start)
    load_blocks = [b for b in events.blocks if start <= b[0] <= last_commit]
    sizes = [b[3] for b in load_blocks]
    refused: collections.Counter[str] = collections.Counter()
    for s in subs:
        refused.update(s.refused)
    result["load"] = {
        "txs_presigned": n_txs, "accounts": n_acc, "connections": threads,
        "admitted": len(sent), "admit_seconds": submitted_at - start,
        "admitted_tx_per_s": len(sent) / max(1e-9, submitted_at - start),
        "finalized": len(ok), "failed_in_block": len(done) - len(ok),
        "not_committed": len(sent) - len(done),
        "finalize_seconds": last_commit - start,
        "finalized_tx_per_s": len(ok) / max(1e-9, last_commit - start),
        "latency_p50_s": pct(lat, 0.50), "latency_p90_s": pct(lat, 0.90),
        "latency_p99_s": pct(lat, 0.99), "latency_max_s": max(lat, default=float("nan")),
        "blocks": len(load_blocks), "txs_per_block_median": statistics.median(sizes)
        if sizes else 0, "txs_per_block_max": max(sizes, default=0),
        "mempool_full_retries": sum(s.full_retries for s in subs),
        "requests": sum(s.requests for s in subs), "batch": spec["batch"],
        "rate_limit": spec["rate"],
        "refused": dict(refused), "events_error": events.error,
    }
    return result


# ------------------------------------------------------------------ orchestration


def profile_hotspots(raw: Path, top: int) -> Json:
    """From py-spy's raw (collapsed) stacks: self time per frame (file:line); time per
    deepest p2pakash frame (where our code spends it, callees in libraries included); and
    inclusive time per p2pakash function."""
    self_t: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short(f) for f in stack.split(";")]
        self_t[frames[-1]] += n
        mine = [f for f in frames if f.startswith("p2pakash/")]
        if mine:
            ours[mine[-1]] += n
        for fn in {f.split(":", 1)[0] + " " + f.split(" ", 1)[1] for f in mine}:
            incl[fn] += n

    def share(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100 * c / max(1, total), 1)) for f, c in counter.most_common(top)]
    return {"samples": total, "self": share(self_t), "deepest_ours": share(ours),
            "inclusive_ours": share(incl)}


PERF_GROUPS = (  # (group, shared-object substring, symbol prefixes or () for any), first match
    ("ed25519 (libsodium)", "sodium", ("fe25519", "ge25519", "sc25519", "slide", "crypto_sign")),
    ("chacha20-poly1305 (libsodium)", "sodium", ()),
    ("Python GC", "libpython", ("gc_", "visit_", "move_", "update_refs", "subtract_refs",
                               "deduce_unreachable", "PyObject_GC", "_PyObject_GC")),
    ("Python alloc/free", "libpython", ("_PyObject_Malloc", "_PyObject_Free", "PyObject_Malloc",
                                       "PyObject_Free", "tuple_alloc", "tupledealloc",
                                       "subtype_dealloc", "dict_dealloc", "list_dealloc",
                                       "free_keys_object", "new_keys_object", "_PyFrame_Clear")),
    ("Python interpreter", "libpython", ()),
    ("kernel", "[kernel", ()), ("libc (malloc, memcpy)", "libc", ()),
    ("cbor2", "cbor2", ()), ("sqlite", "sqlite", ()), ("json", "_json", ()),
)


def perf_groups(report: str) -> list[tuple[str, float]]:
    """Shares of CPU per group from ``perf report --sort dso,sym --stdio`` lines."""
    shares: dict[str, float] = collections.defaultdict(float)
    for line in report.splitlines():
        fields = line.split()
        if len(fields) < 4 or not fields[0].endswith("%") or fields[2] not in ("[.]", "[k]"):
            continue
        pct, dso, sym = float(fields[0][:-1]), fields[1], fields[3]
        group = next((g for g, d, prefixes in PERF_GROUPS
                      if d in dso and (not prefixes or sym.startswith(prefixes))), "other")
        shares[group] += pct
    return [(g, round(v, 1)) for g, v in sorted(shares.items(), key=lambda kv: -kv[1])]


def _short(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``file.py:123 func`` relative to the repo/site."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", str(ROOT) + "/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{where} {name}"


def _loadavg() -> float:
    """The 1-minute load average (the machine is shared: it says how contended a run was)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``section.key=value`` (value parsed as JSON when it can be) -> config overrides."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        section, dot, key = name.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--set {pair!r}: expected SECTION.KEY=VALUE")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        out.setdefault(section, {})[key] = value
    return out


def run(args: argparse.Namespace) -> Json:
    from tests.integration.chain_helpers import (
        ChainNet,
        height_of,
        install_genesis,
        make_genesis,
        make_homes,
        poll,
    )

    work = Path(args.workdir or tempfile.mkdtemp(prefix="chain-bench-"))
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"{work}: not empty")
    work.mkdir(parents=True, exist_ok=True)
    homes = make_homes(work, 4, chain_id=CHAIN, overrides=overrides(args.set))
    make_genesis(work / "genesis.json", chain_id=CHAIN, validators=homes, via_cli=False,
                 accounts=[(account_key(i).address, BALANCE) for i in range(args.accounts)])
    install_genesis(work / "genesis.json", homes)
    net = ChainNet(homes)
    result: Json = {"config": vars(args), "workdir": str(work)}
    spy: subprocess.Popen[bytes] | None = None
    perf: subprocess.Popen[bytes] | None = None
    try:
        for i in range(4):
            net.start(i)
        poll(lambda: all(height_of(net.client(i)) >= 2 for i in range(4)), limit=60,
             what="four validators at height 2", describe=net.tails)
        spec = {"api_ports": [h.api_port for h in homes], "accounts": args.accounts,
                "txs": args.txs, "conns": args.conns, "duration": args.duration,
                "batch": args.batch, "rate": args.rate, "body": args.body,
                "idle": args.idle, "started_file": str(work / "load-started")}
        spec_file = work / "loadgen.json"
        spec_file.write_text(json.dumps(spec))
        pids = [n.proc.pid for n in net.nodes if n.proc is not None]
        gen = subprocess.Popen([sys.executable, __file__, "--loadgen", str(spec_file)],
                               stdout=subprocess.PIPE, text=True)
        idle_from = (time.monotonic(), [cpu_seconds(p) for p in pids])
        time.sleep(args.idle)  # the load generator watches idle blocks meanwhile
        idle_to = (time.monotonic(), [cpu_seconds(p) for p in pids])
        result["validator_idle_cpu_per_s"] = [
            round((b - a) / (idle_to[0] - idle_from[0]), 3)
            for a, b in zip(idle_from[1], idle_to[1], strict=True)]
        poll(lambda: (work / "load-started").exists() or gen.poll() is not None,
             limit=120, what="the load to start")
        cpu_before = [cpu_seconds(p) for p in pids]
        result["loadavg_at_load_start"] = _loadavg()
        if args.profile:
            time.sleep(args.profile_delay)
            spy = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pids[1]),
                 "-d", str(args.profile), "-r", "200", "--format", "raw",
                 "--nonblocking", "-o", str(work / "profile.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if args.perf:
            if not args.profile:
                time.sleep(args.profile_delay)
            perf = subprocess.Popen(
                ["perf", "record", "-e", "cpu-clock", "-F", "499", "-p", str(pids[1]),
                 "-o", str(work / "perf.data"), "--", "sleep", str(args.perf)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out, _ = gen.communicate(timeout=args.idle + args.duration + 300)
        if gen.returncode != 0:
            raise SystemExit(f"load generator failed ({gen.returncode})")
        result.update(json.loads(out))
        result["loadavg_at_load_end"] = _loadavg()
        result["validator_cpu_s"] = [round(cpu_seconds(p) - c, 2)
                                     for p, c in zip(pids, cpu_before, strict=True)]
        finalized = max(1, result["load"]["finalized"])
        result["validator_cpu_ms_per_tx"] = round(
            1000 * sum(result["validator_cpu_s"]) / finalized / len(pids), 3)
        result["heights"] = [height_of(net.client(i)) for i in range(4)]
        if perf is not None:
            perf.wait(timeout=args.perf + 30)
            report = subprocess.run(
                ["perf", "report", "-i", str(work / "perf.data"), "--no-children", "--sort",
                 "dso,sym", "--stdio"], capture_output=True, text=True, timeout=120).stdout
            result["perf"] = perf_groups(report)
        if spy is not None:
            spy.wait(timeout=args.profile + 30)
            if (work / "profile.txt").exists():
                result["profile"] = profile_hotspots(work / "profile.txt", args.top)
            else:
                result["profile_error"] = (spy.stderr.read() if spy.stderr else b"").decode()
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
            spy.wait(timeout=10)
        net.stop_all()
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return result


def table(r: Json) -> str:
    load, idle = r["load"], r.get("idle", {})
    rows = [
        ("txs admitted / pre-signed", f"{load['admitted']} / {load['txs_presigned']}"
                                      f" ({load['accounts']} accounts,"
                                      f" {load['connections']} connections)"),
        ("admitted tx/s", f"{load['admitted_tx_per_s']:.0f} (batch {load['batch']},"
                          f" rate limit {load['rate_limit'] or 'none'},"
                          f" {load['requests']} requests)"),
        ("finalized tx/s", f"{load['finalized_tx_per_s']:.0f} ({load['finalized']} txs in"
                           f" {load['finalize_seconds']:.1f} s)"),
        ("latency submit->commit p50 / p90 / p99 / max",
         f"{load['latency_p50_s']:.2f} / {load['latency_p90_s']:.2f} /"
         f" {load['latency_p99_s']:.2f} / {load['latency_max_s']:.2f} s"),
        ("blocks under load, txs/block median / max",
         f"{load['blocks']}, {load['txs_per_block_median']} / {load['txs_per_block_max']}"),
        ("idle block interval (header median / mean)",
         f"{idle.get('interval_header_median_s', float('nan')):.3f} /"
         f" {idle.get('interval_header_mean_s', float('nan')):.3f} s"),
        ("CPU s per validator, load phase", ", ".join(map(str, r["validator_cpu_s"]))),
        ("CPU ms per finalized tx per validator", f"{r['validator_cpu_ms_per_tx']:.2f}"),
        ("idle CPU per validator (s per s)",
         ", ".join(map(str, r["validator_idle_cpu_per_s"]))),
        ("CPU s of the load generator (load phase)", f"{r['loadgen_cpu_s']:.1f}"),
        ("load average at load start / end",
         f"{r['loadavg_at_load_start']:.2f} / {r['loadavg_at_load_end']:.2f}"),
        ("failed in block / not committed / refused",
         f"{load['failed_in_block']} / {load['not_committed']} / {load['refused']}"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    if "perf" in r:
        lines.append("\nperf on node1 (CPU clock), share of CPU:")
        lines += [f"  {share:5.1f}%  {group}" for group, share in r["perf"]]
    if "profile" in r:
        p = r["profile"]
        lines.append(f"\npy-spy on node1 ({p['samples']} samples), self time:")
        lines += [f"  {share:5.1f}%  {frame}" for frame, share in p["self"]]
        for key, title in (("deepest_ours", "deepest p2pakash frame (its callees included)"),
                           ("inclusive_ours", "inclusive, p2pakash functions")):
            lines.append(f"{title}:")
            lines += [f"  {share:5.1f}%  {frame}" for frame, share in p[key]]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--txs", type=int, default=30_000, help="pre-signed Send txs")
    ap.add_argument("--accounts", type=int, default=3_000, help="funded sender accounts")
    ap.add_argument("--conns", type=int, default=2, help="HTTP connections per validator")
    ap.add_argument("--batch", type=int, default=100,
                    help="txs per POST /txs request (0: one POST /tx per tx)")
    ap.add_argument("--body", choices=("cbor", "json"), default="cbor",
                    help="POST /txs body: a CBOR array of tx bytes, or JSON of hex strings")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="total submit rate in tx/s over all connections (0: as fast as the"
                         " nodes admit)")
    ap.add_argument("--duration", type=float, default=40.0, help="max seconds of load")
    ap.add_argument("--idle", type=float, default=5.0, help="seconds to watch idle blocks")
    ap.add_argument("--profile", type=int, default=0,
                    help="py-spy a validator (node1) for this many seconds under load")
    ap.add_argument("--profile-delay", type=float, default=1.0,
                    help="seconds after the load starts to start py-spy")
    ap.add_argument("--perf", type=int, default=0,
                    help="perf-record node1's CPU for this many seconds of load (C-level split)")
    ap.add_argument("--top", type=int, default=20, help="profile rows to print")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="node config override, e.g. consensus.timeout_commit=0.5")
    ap.add_argument("--workdir", help="keep the testnet here (default: a temp dir, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--json-out", help="also write the JSON result here")
    ap.add_argument("--loadgen", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.loadgen:
        print(json.dumps(loadgen(json.loads(Path(args.loadgen).read_text()))))
        return
    result = run(args)
    text = json.dumps(result, indent=1, default=str)
    if args.json_out:
        Path(args.json_out).write_text(text)
    print(text)
    print()
    print(table(result))


if __name__ == "__main__":
    main()
