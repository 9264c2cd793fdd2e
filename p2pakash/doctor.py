"""``p2pakash doctor``: check that this machine and a node home are ready to run a node.

Rules and invariants:
* Every check returns one ``Check``: PASS, FAIL (with a fix), or SKIP/WARN (not applicable,
  or not fatal: e.g. no GPUs on a CPU provider). No check raises; each is bounded in time.
* Checks: config loads; key file is private (mode 0600); genesis valid; p2p and API ports
  free; the clock is sane (after 2024, not behind the genesis by more than the allowed
  skew); Podman reachable and able to run a container (providers with executor podman);
  NVML GPUs found; every seed and persistent peer reachable with a completed handshake on
  our chain (a peer of another chain is a FAIL naming its chain).
* Nothing is written: a port is tested by binding and closing, a seed by a handshake with
  a throwaway key, a container by ``run --rm`` of ``true``.
"""

from __future__ import annotations

import errno
import socket
import stat
import time
from pathlib import Path

import attrs

from p2pakash import crypto, home
from p2pakash.config import NodeConfig, load_config
from p2pakash.errors import P2PAkashError
from p2pakash.gossip.addr import PeerAddr, split_host_port

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"
EPOCH_2024_MS = 1_704_067_200_000
MAX_SKEW_S = 60.0


@attrs.frozen(kw_only=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"[{self.status}] {self.name}: {self.detail}"
        return text + (f"\n       fix: {self.fix}" if self.fix and self.status != PASS else "")


def check_key(path: Path) -> Check:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        return Check(name="key file", status=FAIL, detail=f"{path}: {exc.strerror}",
                     fix="create a home with 'p2pakash node init --home DIR'")
    if mode & 0o077:
        return Check(name="key file", status=FAIL,
                     detail=f"{path} has mode {mode:04o}: readable by others",
                     fix=f"chmod 600 {path}")
    try:
        crypto.load_key(path)
    except P2PAkashError as exc:
        return Check(name="key file", status=FAIL, detail=str(exc),
                     fix="restore the key from your backup")
    return Check(name="key file", status=PASS, detail=f"{path} is private ({mode:04o})")


def check_port(what: str, listen: str) -> Check:
    try:
        host, port = split_host_port(listen)
    except ValueError as exc:
        return Check(name=f"{what} port", status=FAIL, detail=str(exc), fix="fix the address")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        why = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        return Check(name=f"{what} port", status=FAIL, detail=f"{listen}: {why}",
                     fix=f"stop the process using {listen} (ss -ltnp | grep {port}) or change "
                         f"{what}.listen in config.toml")
    finally:
        sock.close()
    return Check(name=f"{what} port", status=PASS, detail=f"{listen} is free")


def check_clock(now_ms: int, genesis_ms: int | None) -> Check:
    if now_ms < EPOCH_2024_MS:
        return Check(name="clock", status=FAIL,
                     detail=f"system time {time.strftime('%Y-%m-%d', time.gmtime(now_ms / 1000))}"
                            " is before 2024", fix="enable NTP: timedatectl set-ntp true")
    if genesis_ms is not None and genesis_ms - now_ms > MAX_SKEW_S * 1000:
        ahead = (genesis_ms - now_ms) / 1000
        return Check(name="clock", status=WARN,
                     detail=f"the genesis time is {ahead:.0f} s in the future: the chain starts "
                            "then (or this clock is behind)",
                     fix="wait for the genesis time, or enable NTP: timedatectl set-ntp true")
    return Check(name="clock", status=PASS,
                 detail=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ms / 1000)))


def check_podman(socket_url: str, image: str = "localhost/busybox:latest",
                 timeout: float = 30.0) -> Check:
    from podman import PodmanClient

    name = "podman"
    fix = ("start the service: podman system service --time=0 " + socket_url
           + " (as root; see scripts/setup-podman.sh)")
    try:
        with PodmanClient(base_url=socket_url, timeout=timeout) as client:
            if not client.ping():
                return Check(name=name, status=FAIL, detail=f"{socket_url}: no answer", fix=fix)
            if not client.images.exists(image):
                return Check(name=name, status=FAIL, detail=f"{socket_url}: image {image} absent",
                             fix="build it: make podman, then run make demo once (podman import"
                                 " of busybox-static), or pull an image your SDLs use")
            client.containers.run(image, ["true"], remove=True, detach=False)
    except Exception as exc:  # the podman client raises many types; all mean "not usable"
        return Check(name=name, status=FAIL, detail=f"{socket_url}: {type(exc).__name__}: "
                                                    f"{str(exc)[:200]}", fix=fix)
    return Check(name=name, status=PASS, detail=f"{socket_url} ran a {image} container")


def check_gpus(nvml: object = None) -> Check:
    from p2pakash.plugins.gpu_nvml import NvmlProbe

    gpus = NvmlProbe(nvml).probe()
    if not gpus:
        return Check(name="GPUs (NVML)", status=WARN, detail="no NVIDIA GPU found",
                     fix="install the NVIDIA driver (nvidia-smi must work) for GPU leases; a "
                         "CPU-only provider needs nothing")
    names = ", ".join(sorted({g.model for g in gpus}))
    return Check(name="GPUs (NVML)", status=PASS, detail=f"{len(gpus)} GPU(s): {names}")


async def _handshake(addr: PeerAddr, chain_id: str, limit: float) -> None:
    from p2pakash.gossip.tcp import TcpTransport

    transport = TcpTransport(crypto.PrivateKey.generate(), chain_id, None,
                             handshake_timeout=limit)
    conn = await transport.dial(f"{addr.host}:{addr.port}", expected=addr.node_id)
    await conn.aclose()


def check_seed(addr: PeerAddr, chain_id: str, timeout: float = 5.0) -> Check:
    import trio

    name = f"seed {addr.node_id[:12]}@{addr.host}:{addr.port}"
    try:
        trio.run(_handshake, addr, chain_id, timeout)
    except OSError as exc:
        return Check(name=name, status=FAIL, detail=f"unreachable: {exc.strerror or exc}",
                     fix="check the address, that the node runs, and firewalls (TCP "
                         f"{addr.port})")
    except P2PAkashError as exc:
        return Check(name=name, status=FAIL, detail=f"handshake failed: {exc}",
                     fix="use the seeds published with this network's genesis")
    return Check(name=name, status=PASS, detail=f"handshake on chain {chain_id} completed")


def _config_checks(cfg: NodeConfig, seeds_timeout: float) -> list[Check]:
    out = [check_key(cfg.key_path)]
    genesis_ms: int | None = None
    if cfg.genesis_path.exists():
        from p2pakash.ledger.genesis import load_genesis

        try:
            doc = load_genesis(cfg.genesis_path)
            genesis_ms = doc.genesis_time_ms
            out.append(Check(name="genesis", status=PASS,
                             detail=f"{cfg.genesis_path}: chain {doc.chain_id}, hash "
                                    f"{doc.genesis_hash().hex()[:16]}..."))
        except P2PAkashError as exc:
            out.append(Check(name="genesis", status=FAIL, detail=str(exc),
                             fix="fetch the network's genesis again (node init --genesis)"))
    else:
        out.append(Check(name="genesis", status=WARN, detail=f"{cfg.genesis_path} absent: the "
                         "node runs gossip only", fix="p2pakash node init --genesis FILE_OR_URL"))
    out.append(check_port("p2p", cfg.p2p.listen))
    out.append(check_port("api", cfg.api.listen))
    out.append(check_clock(int(time.time() * 1000), genesis_ms))
    provider = cfg.provider
    if provider is not None and provider.executor == "podman":
        out.append(check_podman(provider.podman_socket or "unix:///run/podman/podman.sock"))
    else:
        out.append(Check(name="podman", status=SKIP, detail="not a podman provider"))
    out.append(check_gpus() if provider is not None else
               Check(name="GPUs (NVML)", status=SKIP, detail="not a provider"))
    peers = list(cfg.p2p.seeds) + list(cfg.p2p.persistent_peers)
    if not peers:
        out.append(Check(name="seeds", status=WARN, detail="no seeds or persistent peers",
                         fix="add the network's seeds: p2p.seeds in config.toml"))
    out.extend(check_seed(p, cfg.chain_id, seeds_timeout) for p in peers)
    return out


def run_checks(home_dir: Path | None, *, seeds_timeout: float = 5.0) -> list[Check]:
    """Every check for ``home_dir`` (or only the machine's without a home)."""
    if home_dir is None:
        import tempfile

        from p2pakash.executor.podman_setup import podman_unusable_reason

        out = [check_clock(int(time.time() * 1000), None)]
        with tempfile.TemporaryDirectory(prefix="p2pakash-doctor-") as tmp:
            reason = podman_unusable_reason(Path(tmp))
        out.append(Check(name="podman", status=PASS, detail="podman info works")
                   if reason is None else
                   Check(name="podman", status=FAIL, detail=reason,
                         fix="as root: make podman (scripts/setup-podman.sh)"))
        out.append(check_gpus())
        return out
    try:
        cfg = load_config(home.config_path(home_dir))
    except P2PAkashError as exc:
        return [Check(name="config", status=FAIL, detail=str(exc),
                      fix="p2pakash config check FILE shows every problem")]
    return [Check(name="config", status=PASS, detail=f"{home.config_path(home_dir)} "
                  f"(chain {cfg.chain_id}, moniker {cfg.moniker})"),
            *_config_checks(cfg, seeds_timeout)]
