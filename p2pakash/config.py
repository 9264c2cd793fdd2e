"""Node configuration: a TOML file structured into frozen attrs classes by cattrs.

Rules and invariants:
* Each ``[section]`` is one attrs class and one field of ``NodeConfig``; adding a section
  is adding a class and a field. Every key has a default except ``chain_id``.
* Structuring is strict: no silent coercion (``"ten"`` is not an integer, ``"yes"`` is
  not a boolean, a string is not an array), unknown keys are errors, floats are finite.
* Every problem becomes one line ``FILE: key.path[i]: what is wrong``; ``ConfigFileError``
  carries all of them in ``problems`` and shows the first (and a count) as its message.
* Relative paths (``home``) resolve against the directory of the config file.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn

from p2pakash import home as home_layout
from p2pakash import wire
from p2pakash.errors import ConfigError
from p2pakash.gossip.addr import PeerAddr, split_host_port
from p2pakash.market.sdl.units import parse_size

CHAIN_ID_RE = re.compile(r"^[a-zA-Z0-9._-]{1,50}$")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


class ConfigFileError(ConfigError):
    """One or more problems in one config source; ``problems`` holds one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)


class _Invalid(ValueError):
    """A value failed a check; ``key`` (if any) extends the path of the enclosing section."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------- field checks

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _positive(inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise _Invalid(f"must be positive, got {_show(value)}", attribute.name)


def _non_negative(inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:
        raise _Invalid(f"must not be negative, got {_show(value)}", attribute.name)


def _at_most(limit: int) -> Validator:
    def check(inst: object, attribute: attrs.Attribute[Any], value: int) -> None:
        if value > limit:
            raise _Invalid(f"must be at most {limit}, got {value}", attribute.name)
    return check


def _one_of(*choices: str) -> Validator:
    def check(inst: object, attribute: attrs.Attribute[Any], value: str) -> None:
        if value not in choices:
            raise _Invalid(f"expected one of {', '.join(choices)}, got {_show(value)}",
                           attribute.name)
    return check


def _host_port(inst: object, attribute: attrs.Attribute[Any], value: str) -> None:
    try:
        split_host_port(value)
    except ValueError as exc:
        raise _Invalid(str(exc), attribute.name) from None


def _host_port_or_empty(inst: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if value:
        _host_port(inst, attribute, value)


def _chain_id(inst: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not CHAIN_ID_RE.fullmatch(value):
        raise _Invalid(f"expected 1-50 characters of [a-zA-Z0-9._-], got {_show(value)}",
                       attribute.name)


# ---------------------------------------------------------------- sections


@attrs.frozen(kw_only=True)
class P2PConfig:
    listen: str = attrs.field(default="127.0.0.1:26656", validator=_host_port)
    external: str = attrs.field(default="", validator=_host_port_or_empty)
    seeds: tuple[PeerAddr, ...] = ()
    persistent_peers: tuple[PeerAddr, ...] = ()
    max_inbound: int = attrs.field(default=40, validator=_non_negative)
    max_outbound: int = attrs.field(default=10, validator=_non_negative)
    max_per_host: int = attrs.field(default=8, validator=_positive)
    handshake_timeout: float = attrs.field(default=5.0, validator=_positive)
    max_frame_size: int = attrs.field(
        default=1048576, validator=[_positive, _at_most(wire.MAX_MESSAGE_SIZE)])
    ping_interval: float = attrs.field(default=10.0, validator=_positive)
    ping_timeout: float = attrs.field(default=30.0, validator=_positive)
    pex: bool = True
    ban_seconds: float = attrs.field(default=600.0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.ping_timeout <= self.ping_interval:
            raise _Invalid(f"must be greater than ping_interval ({self.ping_interval}),"
                           f" got {self.ping_timeout}", "ping_timeout")

    @property
    def listen_host_port(self) -> tuple[str, int]:
        return split_host_port(self.listen)

    @property
    def advertised(self) -> str:
        """The ``host:port`` others should dial: ``external`` if set, else ``listen``."""
        return self.external or self.listen


# Consensus votes are small, frequent and repaired by consensus itself (resends on a stall,
# block sync): a narrower mesh than gossipsub's D=6 halves their copies (docs/gossip.md).
DEFAULT_TOPIC_DEGREE: dict[str, tuple[int, ...]] = {"consensus/vote": (3, 4, 6)}


def _degrees(inst: object, attribute: attrs.Attribute[Any],
             value: dict[str, tuple[int, ...]]) -> None:
    for topic, degree in value.items():
        if len(degree) != 3 or not 0 < degree[0] <= degree[1] <= degree[2]:
            raise _Invalid(f"expected [d_lo, d, d_hi] with 0 < d_lo <= d <= d_hi, got "
                           f"{list(degree)}", f"{attribute.name}.{topic}")


def topic_degree_params(degrees: dict[str, tuple[int, ...]]
                        ) -> tuple[tuple[str, int, int, int], ...]:
    """``PubSubParams.topic_degree`` from a ``topic_degree`` table (checked by ``_degrees``)."""
    return tuple((topic, d[0], d[1], d[2]) for topic, d in sorted(degrees.items()))


@attrs.frozen(kw_only=True)
class GossipConfig:
    d: int = attrs.field(default=6, validator=_positive)
    d_lo: int = attrs.field(default=4, validator=_positive)
    d_hi: int = attrs.field(default=12, validator=_positive)
    heartbeat_interval: float = attrs.field(default=1.0, validator=_positive)
    seen_ttl: float = attrs.field(default=120.0, validator=_positive)
    flood_publish: bool = True
    flush_interval: float = attrs.field(default=0.001, validator=_non_negative)
    max_msgs_per_sec: float = attrs.field(default=1000.0, validator=_positive)
    topic_degree: dict[str, tuple[int, ...]] = attrs.field(
        factory=lambda: dict(DEFAULT_TOPIC_DEGREE), validator=_degrees)

    def __attrs_post_init__(self) -> None:
        if not self.d_lo <= self.d <= self.d_hi:
            raise _Invalid(f"must satisfy d_lo <= d <= d_hi, got d_lo={self.d_lo},"
                           f" d={self.d}, d_hi={self.d_hi}", "d")


@attrs.frozen(kw_only=True)
class ConsensusConfig:
    """Tendermint timeouts: ``init + round * delta`` seconds (defaults for a local net)."""

    timeout_propose: float = attrs.field(default=0.3, validator=_positive)
    timeout_propose_delta: float = attrs.field(default=0.05, validator=_non_negative)
    timeout_prevote: float = attrs.field(default=0.1, validator=_positive)
    timeout_prevote_delta: float = attrs.field(default=0.05, validator=_non_negative)
    timeout_precommit: float = attrs.field(default=0.1, validator=_positive)
    timeout_precommit_delta: float = attrs.field(default=0.05, validator=_non_negative)
    timeout_commit: float = attrs.field(default=0.1, validator=_non_negative)
    max_block_bytes: int = attrs.field(default=524288, validator=_positive)
    # Take the proposal and vote topics though not a validator (else: follow committed blocks).
    follow_votes: bool = False


@attrs.frozen(kw_only=True)
class ApiConfig:
    listen: str = attrs.field(default="127.0.0.1:26680", validator=_host_port)
    allow_remote_writes: bool = False
    # Index committed txs by hash for GET /tx (a validator that serves no queries may
    # turn it off, as CometBFT's indexer = "null": ~5 % of its CPU under load).
    tx_index: bool = True


@attrs.frozen(kw_only=True)
class LogConfig:
    level: str = attrs.field(default="info", validator=_one_of(*LOG_LEVELS))
    format: str = attrs.field(default="text", validator=_one_of(*LOG_FORMATS))


def _size(inst: object, attribute: attrs.Attribute[Any], value: str) -> None:
    try:
        parse_size(value)
    except ValueError as exc:
        raise _Invalid(f"not a size ({exc})", attribute.name) from None


def _sizes(inst: object, attribute: attrs.Attribute[Any], value: dict[str, str]) -> None:
    for name, size in value.items():
        try:
            parse_size(size)
        except ValueError as exc:
            raise _Invalid(f"not a size ({exc})", f"{attribute.name}.{name}") from None


@attrs.frozen(kw_only=True)
class ProviderConfig:
    """``[provider]``: present -> the node is a provider (``p2pakash.provider``).

    Capacity is ``cpu`` (cores), ``memory`` and ``storage`` (class -> size, Akash suffixes).
    Times are seconds. ``pricing``/``plugins``/``gpu_probes``/``entry_points`` and every
    sub-table other than ``attributes``/``storage`` (``[provider.linear]``, ...) are plugin
    settings: ``plugin_tables`` keeps those sub-tables; ``plugin_table()`` gives the table
    ``PluginConfig.from_table`` reads.
    """

    host_uri: str = ""  # "" -> "p2p://<node id>@<p2p advertised address>"
    attributes: dict[str, str] = attrs.Factory(dict)
    bond: int = attrs.field(default=500_000, validator=_positive)
    register: bool = True  # send CreateProvider at start when not registered
    pricing: str = "linear"
    plugins: tuple[str, ...] = ()
    gpu_probes: tuple[str, ...] = ("nvml", "static")
    entry_points: bool = True
    executor: str = attrs.field(default="podman", validator=_one_of("podman", "fake"))
    podman_socket: str = ""  # "" -> the podman client's default
    cpu: float = attrs.field(default=4.0, validator=_positive)
    memory: str = attrs.field(default="8Gi", validator=_size)
    storage: dict[str, str] = attrs.field(factory=lambda: {"ephemeral": "100Gi"},
                                          validator=_sizes)
    bid_ttl: float = attrs.field(default=300.0, validator=_positive)
    reservation_grace: float = attrs.field(default=30.0, validator=_non_negative)
    manifest_timeout: float = attrs.field(default=300.0, validator=_positive)
    withdraw_period: float = attrs.field(default=3600.0, validator=_positive)
    send_declines: bool = True
    publish_bids: bool = False  # flood bids/declines on their topic, not back the order's way
    declines_per_second: float = attrs.field(default=2.0, validator=_positive)
    pricing_threads: int = attrs.field(default=8, validator=_positive)
    plugin_tables: dict[str, Any] = attrs.Factory(dict)

    @property
    def cpu_millis(self) -> int:
        return round(self.cpu * 1000)

    @property
    def memory_bytes(self) -> int:
        return parse_size(self.memory)

    @property
    def storage_bytes(self) -> dict[str, int]:
        return {name: parse_size(size) for name, size in self.storage.items()}

    def plugin_table(self) -> dict[str, Any]:
        return {"pricing": self.pricing, "plugins": list(self.plugins),
                "gpu_probes": list(self.gpu_probes), "entry_points": self.entry_points,
                **self.plugin_tables}


@attrs.frozen(kw_only=True)
class NodeConfig:
    chain_id: str = attrs.field(validator=_chain_id)
    moniker: str = "node0"
    home: Path = Path(".")
    p2p: P2PConfig = attrs.Factory(P2PConfig)
    gossip: GossipConfig = attrs.Factory(GossipConfig)
    api: ApiConfig = attrs.Factory(ApiConfig)
    consensus: ConsensusConfig = attrs.Factory(ConsensusConfig)
    log: LogConfig = attrs.Factory(LogConfig)
    provider: ProviderConfig | None = None

    @property
    def key_path(self) -> Path:
        return home_layout.key_path(self.home)

    @property
    def data_dir(self) -> Path:
        return home_layout.data_dir(self.home)

    @property
    def genesis_path(self) -> Path:
        return home_layout.genesis_path(self.home)


# ---------------------------------------------------------------- strict converter


def _strict_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)

    def as_int(v: Any, _: type) -> int:
        if type(v) is not int:
            raise _Invalid(f"expected an integer, got {_show(v)}")
        return v

    def as_float(v: Any, _: type) -> float:
        if type(v) not in (int, float):
            raise _Invalid(f"expected a number, got {_show(v)}")
        if not math.isfinite(v):
            raise _Invalid(f"expected a finite number, got {_show(v)}")
        return float(v)

    def as_bool(v: Any, _: type) -> bool:
        if type(v) is not bool:
            raise _Invalid(f"expected true or false, got {_show(v)}")
        return v

    def as_str(v: Any, _: type) -> str:
        if type(v) is not str:
            raise _Invalid(f"expected a string, got {_show(v)}")
        return v

    def as_path(v: Any, _: type) -> Path:
        return Path(as_str(v, str))

    def as_peer(v: Any, _: type) -> PeerAddr:
        if type(v) is not str:
            raise _Invalid(f"expected 'ID@host:port', got {_show(v)}")
        return PeerAddr.parse(v)

    conv.register_structure_hook(int, as_int)
    conv.register_structure_hook(float, as_float)
    conv.register_structure_hook(bool, as_bool)
    conv.register_structure_hook(str, as_str)
    conv.register_structure_hook(Path, as_path)
    conv.register_structure_hook(PeerAddr, as_peer)
    conv.register_unstructure_hook(PeerAddr, str)
    conv.register_unstructure_hook(Path, str)

    def section_hook(cls: type) -> Callable[[Any, type], Any]:
        inner: Callable[[Any, Any], Any] = make_dict_structure_fn(
            cls, conv, _cattrs_forbid_extra_keys=True)

        def structure(v: Any, _: type) -> Any:
            if not isinstance(v, dict):
                raise _Invalid(f"expected a table, got {_show(v)}")
            return inner(v, cls)
        return structure

    def is_tuple(tp: Any) -> bool:
        args = typing.get_args(tp)
        return typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis

    def tuple_hook(tp: Any) -> Callable[[Any, type], Any]:
        item_type = typing.get_args(tp)[0]
        item = conv.get_structure_hook(item_type)

        def structure(v: Any, _: type) -> Any:
            if not isinstance(v, list):
                raise _Invalid(f"expected an array, got {_show(v)}")
            out, errors = [], []
            for index, x in enumerate(v):
                try:
                    out.append(item(x, item_type))
                except Exception as exc:
                    note = IterableValidationNote(f"@ index {index}", index, item_type)
                    exc.__notes__ = [*getattr(exc, "__notes__", []), note]
                    errors.append(exc)
            if errors:
                raise IterableValidationError(f"While structuring {tp!r}", errors, tp)
            return tuple(out)
        return structure

    conv.register_structure_hook_factory(
        lambda t: attrs.has(t) and t is not PeerAddr, section_hook)
    conv.register_structure_hook_factory(is_tuple, tuple_hook)
    _provider_hooks(conv, section_hook(ProviderConfig))
    return conv


def _provider_hooks(conv: cattrs.Converter, inner: Callable[[Any, type], Any]) -> None:
    """``[provider]``: sub-tables that are not fields are plugin tables (and back)."""
    fields = {f.name for f in attrs.fields(ProviderConfig)} - {"plugin_tables"}

    def structure(v: Any, cls: type) -> ProviderConfig:
        if not isinstance(v, dict):
            raise _Invalid(f"expected a table, got {_show(v)}")
        tables = {k: x for k, x in v.items() if k not in fields and isinstance(x, dict)}
        cfg: ProviderConfig = inner({k: x for k, x in v.items() if k not in tables}, cls)
        return attrs.evolve(cfg, plugin_tables=tables)

    plain = cattrs.gen.make_dict_unstructure_fn(ProviderConfig, conv)

    def unstructure(cfg: ProviderConfig) -> dict[str, Any]:
        data: dict[str, Any] = plain(cfg)
        return {**{k: x for k, x in data.items() if k != "plugin_tables"}, **cfg.plugin_tables}

    conv.register_structure_hook(ProviderConfig, structure)
    conv.register_unstructure_hook(ProviderConfig, unstructure)


_CONVERTER = _strict_converter()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path and key else path or key


def _problems(exc: BaseException, path: str) -> list[str]:
    """Flatten a cattrs error tree into ``key.path: message`` lines."""
    if isinstance(exc, ClassValidationError | IterableValidationError):
        found: list[str] = []
        for sub in exc.exceptions:
            sub_path = path
            for note in getattr(sub, "__notes__", []):
                if isinstance(note, AttributeValidationNote):
                    sub_path = _join(path, note.name)
                    break
                if isinstance(note, IterableValidationNote):
                    sub_path = f"{path}[{note.index}]"
                    break
            if isinstance(sub, KeyError) and sub_path != path:
                found.append(f"{sub_path}: required key missing")
            else:
                found.extend(_problems(sub, sub_path))
        return found
    if isinstance(exc, ForbiddenExtraKeysError):
        return [f"{_join(path, key)}: unknown key" for key in sorted(exc.extra_fields)]
    if isinstance(exc, _Invalid):
        return [f"{_join(path, exc.key) or '(top level)'}: {exc}"]
    return [f"{path or '(top level)'}: {exc}"]


# ---------------------------------------------------------------- load and dump


def structure_config(data: dict[str, Any], *, source: str, base_dir: Path) -> NodeConfig:
    """Build a NodeConfig from plain data; problems are prefixed by ``source``."""
    try:
        cfg = _CONVERTER.structure(data, NodeConfig)
    except Exception as exc:
        raise ConfigFileError([f"{source}: {line}" for line in _problems(exc, "")]) from None
    resolved = Path(os.path.normpath(base_dir.absolute() / cfg.home))
    return attrs.evolve(cfg, home=resolved)


def load_config(path: Path) -> NodeConfig:
    """Read and check one TOML config file."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigFileError([f"{path}: config file not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError([f"{path}: invalid TOML: {exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigFileError([f"{path}: invalid TOML: not UTF-8 text"]) from None
    except RecursionError:
        raise ConfigFileError([f"{path}: invalid TOML: nested too deeply"]) from None
    except OSError as exc:
        raise ConfigFileError([f"{path}: cannot read: {exc.strerror}"]) from None
    return structure_config(data, source=str(path), base_dir=path.parent)


def unstructure_config(cfg: NodeConfig) -> dict[str, Any]:
    data: dict[str, Any] = _CONVERTER.unstructure(cfg)
    return {k: v for k, v in data.items() if v is not None}  # absent optional sections


def dump_config(cfg: NodeConfig) -> str:
    """TOML text that ``load_config`` reads back into ``cfg`` (home as written)."""
    data = unstructure_config(cfg)
    lines: list[str] = []
    _write_table(lines, "", data)
    return "\n".join(lines).lstrip("\n") + "\n"


def _write_table(lines: list[str], name: str, table: dict[str, Any]) -> None:
    if name:
        lines.extend(["", f"[{name}]"])
    for key, value in table.items():
        if not isinstance(value, dict):
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in table.items():
        if isinstance(value, dict):
            _write_table(lines, _join(name, _toml_key(key)), value)


def _toml_key(key: str) -> str:
    """A bare key when TOML allows one, else a quoted key ("consensus/vote")."""
    return key if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key) \
        else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(_toml_char(c) for c in value) + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml_char(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\u{ord(char):04x}"
    return char
