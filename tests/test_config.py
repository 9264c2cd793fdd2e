"""config: exact one-line errors naming file and key path; defaults; path resolution;
dump/load round-trip; the example configs in configs/; home folder helpers."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import attrs
import pytest

from p2pakash import crypto, home
from p2pakash.config import (
    ConfigFileError,
    GossipConfig,
    LogConfig,
    NodeConfig,
    P2PConfig,
    dump_config,
    load_config,
    structure_config,
)
from p2pakash.consensus.messages import VOTE_TOPIC
from p2pakash.errors import ConfigError
from p2pakash.gossip.addr import PeerAddr

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
NID = "0123456789abcdef0123456789abcdef01234567"


def _write(tmp_path: Path, text: str, name: str = "node.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _problems(path: Path) -> tuple[str, ...]:
    with pytest.raises(ConfigFileError) as info:
        load_config(path)
    assert isinstance(info.value, ConfigError)
    for line in info.value.problems:
        assert "\n" not in line and line.startswith(f"{path}: ")
    return info.value.problems


def _one(tmp_path: Path, text: str) -> str:
    path = _write(tmp_path, text)
    problems = _problems(path)
    assert len(problems) == 1, problems
    assert str(_error(path)) == problems[0]
    return problems[0].removeprefix(f"{path}: ")


def _error(path: Path) -> ConfigFileError:
    with pytest.raises(ConfigFileError) as info:
        load_config(path)
    return info.value


# ---------------------------------------------------------------- defaults


def test_minimal_config_takes_every_default(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, 'chain_id = "c"\n'))
    assert cfg == NodeConfig(chain_id="c", home=tmp_path)
    assert cfg.moniker == "node0"
    p2p = cfg.p2p
    assert (p2p.listen, p2p.external, p2p.seeds, p2p.persistent_peers) == (
        "127.0.0.1:26656", "", (), ())
    assert (p2p.max_inbound, p2p.max_outbound, p2p.max_per_host) == (40, 10, 8)
    assert (p2p.handshake_timeout, p2p.max_frame_size) == (5.0, 1048576)
    assert (p2p.ping_interval, p2p.ping_timeout, p2p.pex, p2p.ban_seconds) == (
        10.0, 30.0, True, 600.0)
    g = cfg.gossip
    assert (g.d, g.d_lo, g.d_hi, g.heartbeat_interval, g.seen_ttl) == (6, 4, 12, 1.0, 120.0)
    assert (g.flood_publish, g.flush_interval, g.max_msgs_per_sec) == (True, 0.001, 1000.0)
    assert g.topic_degree == {VOTE_TOPIC: (3, 4, 6)}  # the consensus topic's own mesh
    assert (cfg.api.listen, cfg.api.allow_remote_writes) == ("127.0.0.1:26680", False)
    assert (cfg.log.level, cfg.log.format) == ("info", "text")
    assert p2p.listen_host_port == ("127.0.0.1", 26656)
    assert p2p.advertised == "127.0.0.1:26656"


def test_values_are_read(tmp_path: Path) -> None:
    text = f"""
chain_id = "p2pakash-test.1"
moniker = "alpha"
[p2p]
listen = "[::1]:9000"
external = "example.org:9000"
seeds = ["{NID}@10.0.0.1:26656", "{NID}@[::1]:1"]
persistent_peers = ["{NID}@h:2"]
handshake_timeout = 2
max_inbound = 0
pex = false
[gossip]
d = 3
d_lo = 3
d_hi = 3
flush_interval = 0
[log]
level = "debug"
format = "json"
"""
    cfg = load_config(_write(tmp_path, text))
    assert cfg.moniker == "alpha"
    assert cfg.p2p.listen_host_port == ("::1", 9000)
    assert cfg.p2p.advertised == "example.org:9000"
    assert cfg.p2p.seeds == (PeerAddr.parse(f"{NID}@10.0.0.1:26656"),
                             PeerAddr(node_id=crypto.NodeID(NID), host="::1", port=1))
    assert cfg.p2p.persistent_peers[0].hostport == "h:2"
    assert cfg.p2p.handshake_timeout == 2.0 and type(cfg.p2p.handshake_timeout) is float
    assert (cfg.p2p.max_inbound, cfg.p2p.pex) == (0, False)
    assert cfg.gossip == GossipConfig(d=3, d_lo=3, d_hi=3, flush_interval=0.0)
    assert cfg.log == LogConfig(level="debug", format="json")


def test_relative_home_resolves_against_the_config_directory(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    (tmp_path / "etc").mkdir()
    path = _write(tmp_path / "etc", 'chain_id = "c"\nhome = "../nodes/n1"\n')
    monkeypatch.chdir(tmp_path / "etc")
    cfg = load_config(Path("node.toml"))
    assert cfg.home == tmp_path / "nodes" / "n1"
    assert cfg.key_path == tmp_path / "nodes" / "n1" / "node_key.json"
    assert cfg.data_dir == tmp_path / "nodes" / "n1" / "data"
    assert cfg.genesis_path == tmp_path / "nodes" / "n1" / "genesis.json"
    assert load_config(path) == cfg


def test_absolute_home_is_kept(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, f'chain_id = "c"\nhome = "{tmp_path / "x"}"\n'))
    assert cfg.home == tmp_path / "x"


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert _problems(path) == (f"{path}: config file not found",)


def test_toml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, 'chain_id = "c"\n[p2p\n')
    assert _problems(path) == (
        f"{path}: invalid TOML: Expected ']' at the end of a table declaration"
        " (at line 2, column 5)",)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.toml"
    path.write_bytes(b'chain_id = "\xff"\n')
    assert _problems(path) == (f"{path}: invalid TOML: not UTF-8 text",)


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    (_problem,) = _problems(tmp_path)
    assert _problem.startswith(f"{tmp_path}: cannot read: ")


@pytest.mark.parametrize(("text", "expected"), [
    ('chain_id = "c"\n[p2p]\nseeds = ["foo"]\n',
     "p2p.seeds[0]: expected 'ID@host:port', got 'foo'"),
    (f'chain_id = "c"\n[p2p]\nseeds = ["{NID}@h:1", "foo"]\n',
     "p2p.seeds[1]: expected 'ID@host:port', got 'foo'"),
    (f'chain_id = "c"\n[p2p]\npersistent_peers = ["{NID}@h:0"]\n',
     "p2p.persistent_peers[0]: expected 'ID@host:port': port must be 1..65535, got '0'"),
    ('chain_id = "c"\n[p2p]\nseeds = ["ABC@h:1"]\n',
     "p2p.seeds[0]: expected 'ID@host:port': ID must be 40 lowercase hex characters,"
     " got 'ABC'"),
    ('chain_id = "c"\n[p2p]\nseeds = [3]\n', "p2p.seeds[0]: expected 'ID@host:port', got 3"),
    ('chain_id = "c"\n[p2p]\nseeds = "abc"\n', "p2p.seeds: expected an array, got 'abc'"),
    ('chain_id = "c"\n[p2p]\nsedes = []\n', "p2p.sedes: unknown key"),
    ('chain_id = "c"\nbogus = 1\n', "bogus: unknown key"),
    ('chain_id = "c"\n[no_such_section]\n', "no_such_section: unknown key"),
    ('chain_id = "c"\n[p2p]\nmax_inbound = "ten"\n',
     "p2p.max_inbound: expected an integer, got 'ten'"),
    ('chain_id = "c"\n[p2p]\nmax_inbound = 1.5\n',
     "p2p.max_inbound: expected an integer, got 1.5"),
    ('chain_id = "c"\n[p2p]\nmax_inbound = true\n',
     "p2p.max_inbound: expected an integer, got True"),
    ('chain_id = "c"\n[p2p]\npex = "yes"\n', "p2p.pex: expected true or false, got 'yes'"),
    ('chain_id = "c"\n[p2p]\npex = 1\n', "p2p.pex: expected true or false, got 1"),
    ('chain_id = "c"\n[p2p]\nping_interval = "1"\n',
     "p2p.ping_interval: expected a number, got '1'"),
    ('chain_id = "c"\n[p2p]\nping_interval = nan\n',
     "p2p.ping_interval: expected a finite number, got nan"),
    ('chain_id = "c"\n[p2p]\nhandshake_timeout = inf\n',
     "p2p.handshake_timeout: expected a finite number, got inf"),
    ('chain_id = "c"\nmoniker = 5\n', "moniker: expected a string, got 5"),
    ('chain_id = "c"\nhome = ["a"]\n', "home: expected a string, got ['a']"),
    ('chain_id = "c"\np2p = 3\n', "p2p: expected a table, got 3"),
    ('moniker = "x"\n', "chain_id: required key missing"),
    ('chain_id = "bad chain"\n',
     "chain_id: expected 1-50 characters of [a-zA-Z0-9._-], got 'bad chain'"),
    (f'chain_id = "{"c" * 51}"\n', "chain_id: expected 1-50 characters of [a-zA-Z0-9._-],"
     " got 'ccccccccccccccccccccccccccccccccccccccccccccccccccc'"),
    ('chain_id = "c"\n[p2p]\nlisten = "nope"\n', "p2p.listen: expected 'host:port', got 'nope'"),
    ('chain_id = "c"\n[p2p]\nexternal = ":80"\n',
     "p2p.external: expected 'host:port': missing host in ':80'"),
    ('chain_id = "c"\n[api]\nlisten = "h:99999"\n',
     "api.listen: expected 'host:port': port must be 1..65535, got '99999'"),
    ('chain_id = "c"\n[p2p]\nmax_per_host = 0\n', "p2p.max_per_host: must be positive, got 0"),
    ('chain_id = "c"\n[p2p]\nmax_outbound = -1\n',
     "p2p.max_outbound: must not be negative, got -1"),
    ('chain_id = "c"\n[p2p]\nhandshake_timeout = -0.5\n',
     "p2p.handshake_timeout: must be positive, got -0.5"),
    ('chain_id = "c"\n[p2p]\nmax_frame_size = 5000000\n',
     "p2p.max_frame_size: must be at most 4194304, got 5000000"),
    ('chain_id = "c"\n[p2p]\nping_timeout = 10\n',
     "p2p.ping_timeout: must be greater than ping_interval (10.0), got 10.0"),
    ('chain_id = "c"\n[gossip]\nd = 20\n',
     "gossip.d: must satisfy d_lo <= d <= d_hi, got d_lo=4, d=20, d_hi=12"),
    ('chain_id = "c"\n[gossip]\nd_lo = 0\n', "gossip.d_lo: must be positive, got 0"),
    ('chain_id = "c"\n[gossip.topic_degree]\n"consensus/vote" = [4, 3, 6]\n',
     "gossip.topic_degree.consensus/vote: expected [d_lo, d, d_hi] with 0 < d_lo <= d <= "
     "d_hi, got [4, 3, 6]"),
    ('chain_id = "c"\n[gossip.topic_degree]\nvotes = [1, 2]\n',
     "gossip.topic_degree.votes: expected [d_lo, d, d_hi] with 0 < d_lo <= d <= d_hi, "
     "got [1, 2]"),
    ('chain_id = "c"\n[gossip]\nmax_msgs_per_sec = 0\n',
     "gossip.max_msgs_per_sec: must be positive, got 0.0"),
    ('chain_id = "c"\n[log]\nlevel = "loud"\n',
     "log.level: expected one of debug, info, warning, error, got 'loud'"),
    ('chain_id = "c"\n[log]\nformat = "xml"\n', "log.format: expected one of text, json,"
     " got 'xml'"),
    ('chain_id = "c"\n[api]\nallow_remote_writes = "no"\n',
     "api.allow_remote_writes: expected true or false, got 'no'"),
])
def test_error_message(tmp_path: Path, text: str, expected: str) -> None:
    assert _one(tmp_path, text) == expected


def test_every_problem_is_listed_and_the_message_counts_them(tmp_path: Path) -> None:
    path = _write(tmp_path, 'moniker = 1\n[p2p]\nseeds = ["x", "y"]\nsedes = 1\n'
                            '[log]\nlevel = 3\n')
    assert _problems(path) == (
        f"{path}: chain_id: required key missing",
        f"{path}: moniker: expected a string, got 1",
        f"{path}: p2p.seeds[0]: expected 'ID@host:port', got 'x'",
        f"{path}: p2p.seeds[1]: expected 'ID@host:port', got 'y'",
        f"{path}: p2p.sedes: unknown key",
        f"{path}: log.level: expected a string, got 3",
    )
    assert str(_error(path)) == f"{path}: chain_id: required key missing (and 5 more)"


def test_long_values_are_shortened(tmp_path: Path) -> None:
    message = _one(tmp_path, f'chain_id = "c"\nmoniker = {list(range(100))}\n')
    assert message.startswith("moniker: expected a string, got [0, 1, 2")
    assert message.endswith("...") and len(message) < 100


def test_structure_config_names_its_source() -> None:
    with pytest.raises(ConfigFileError) as info:
        structure_config({"chain_id": "c", "p2p": {"seeds": ["x"]}}, source="node init",
                         base_dir=Path("/"))
    assert str(info.value) == "node init: p2p.seeds[0]: expected 'ID@host:port', got 'x'"


# ---------------------------------------------------------------- dump


def test_dump_then_load_round_trips(tmp_path: Path) -> None:
    cfg = NodeConfig(
        chain_id="c-1", moniker='we"ird\\name\n\x7fé', home=tmp_path / "h",
        p2p=P2PConfig(listen="[::1]:5", seeds=(PeerAddr.parse(f"{NID}@h:1"),),
                      persistent_peers=(PeerAddr.parse(f"{NID}@[::1]:2"),), pex=False,
                      handshake_timeout=0.25),
        gossip=GossipConfig(d=5, flood_publish=False, flush_interval=0.0),
        log=LogConfig(level="error", format="json"))
    text = dump_config(cfg)
    assert load_config(_write(tmp_path, text)) == cfg
    assert text.startswith('chain_id = "c-1"\n')
    assert "\n[p2p]\n" in text and "\n[gossip]\n" in text


def test_dump_of_relative_home_loads_relative_to_the_file(tmp_path: Path) -> None:
    text = dump_config(NodeConfig(chain_id="c"))
    assert 'home = "."' in text
    assert load_config(_write(tmp_path, text)).home == tmp_path


# ---------------------------------------------------------------- example configs


@pytest.mark.parametrize("i", range(5))
def test_example_local_network(i: int) -> None:
    folder = CONFIGS / "local" / f"node{i}"
    cfg = load_config(folder / "config.toml")
    assert cfg.home == folder
    assert cfg.chain_id == "p2pakash-local"
    assert cfg.moniker == f"node{i}"
    assert cfg.p2p.listen == f"127.0.0.1:{26656 + i}"
    assert cfg.api.listen == f"127.0.0.1:{26680 + i}"
    key = crypto.PrivateKey.from_seed(hashlib.sha256(f"p2pakash-local-node{i}".encode()).digest())
    assert home.key_path(folder).read_text().count(key.seed.hex()) == 1
    node0 = crypto.PrivateKey.from_seed(hashlib.sha256(b"p2pakash-local-node0").digest())
    expected_seeds = () if i == 0 else (PeerAddr.parse(f"{node0.node_id}@127.0.0.1:26656"),)
    assert cfg.p2p.seeds == expected_seeds


def test_single_file_example_is_node0() -> None:
    assert load_config(CONFIGS / "node0.toml") == load_config(
        CONFIGS / "local" / "node0" / "config.toml")


# ---------------------------------------------------------------- home folders


def test_copy_home_makes_keys_private(tmp_path: Path) -> None:
    dst = tmp_path / "n0"
    home.copy_home(CONFIGS / "local" / "node0", dst)
    assert stat.S_IMODE(home.key_path(dst).stat().st_mode) == 0o600
    key = crypto.load_key(home.key_path(dst))
    cfg = load_config(home.config_path(dst))
    assert cfg.home == dst and cfg.key_path == home.key_path(dst)
    assert key.node_id == crypto.PrivateKey.from_seed(
        hashlib.sha256(b"p2pakash-local-node0").digest()).node_id


def test_copy_home_refuses_a_non_empty_destination(tmp_path: Path) -> None:
    (tmp_path / "n0").mkdir()
    (tmp_path / "n0" / "x").write_text("keep")
    with pytest.raises(ConfigError, match="already exists and is not an empty folder"):
        home.copy_home(CONFIGS / "local" / "node0", tmp_path / "n0")
    assert (tmp_path / "n0" / "x").read_text() == "keep"
    with pytest.raises(ConfigError, match="not a home folder"):
        home.copy_home(tmp_path / "missing", tmp_path / "n1")


def test_init_home_writes_both_or_nothing(tmp_path: Path) -> None:
    key = crypto.PrivateKey.from_seed(b"\x01" * 32)
    text = dump_config(NodeConfig(chain_id="c"))
    home.init_home(tmp_path / "a", config_toml=text, key=key)
    assert load_config(tmp_path / "a" / "config.toml").home == tmp_path / "a"
    assert crypto.load_key(tmp_path / "a" / "node_key.json").public == key.public
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "node_key.json").write_text("old")
    with pytest.raises(ConfigError, match=r"node_key\.json: already exists"):
        home.init_home(tmp_path / "b", config_toml=text, key=key)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["node_key.json"]
    assert (tmp_path / "b" / "node_key.json").read_text() == "old"


def test_sections_are_frozen() -> None:
    cfg = NodeConfig(chain_id="c")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cfg.chain_id = "d"  # type: ignore[misc]
