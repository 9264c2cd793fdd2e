"""``static`` GPU probe: GPUs declared in config, for hosts NVML cannot see.

Rules and invariants:
* ``[[provider.static.gpus]]`` entries: ``model`` (Akash key, required), ``ram`` ("80Gi",
  required), ``interface`` ("pcie" or "sxm"; "sxm2".."sxm5" fold to "sxm"; default pcie),
  ``vendor`` (default nvidia), ``count`` (default 1), optional ``uuids`` (one per GPU).
* Indices run 0..n-1 in declaration order; a missing UUID is ``static-<index>``.
* Every bad entry is a ConfigError naming ``gpus[i].key``; no entry means no GPUs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from p2pakash.errors import ConfigError
from p2pakash.plugins.hookspecs import hookimpl
from p2pakash.plugins.types import GI, GPURecord, PluginConfig

NAME = "static"
KEYS = ("model", "ram", "interface", "vendor", "count", "uuids")
_KEY = re.compile(r"[a-z0-9][a-z0-9._-]*")
_RAM = re.compile(r"([1-9][0-9]*)Gi")


def parse_gpus(entries: object, where: str) -> list[GPURecord]:
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: expected an array of tables, got {entries!r}")
    records: list[GPURecord] = []
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{at}: expected a table, got {entry!r}")
        records.extend(_entry(entry, at, len(records)))
    return records


def _entry(entry: Mapping[str, Any], at: str, first: int) -> list[GPURecord]:
    for key in entry:
        if key not in KEYS:
            raise ConfigError(f"{at}.{key}: unknown key (expected one of {', '.join(KEYS)})")
    words = {}
    for key, default in (("model", None), ("vendor", "nvidia"), ("interface", "pcie")):
        value = entry.get(key, default)
        if not isinstance(value, str) or not _KEY.fullmatch(value.lower()):
            raise ConfigError(f"{at}.{key}: expected a lower-case name, got {value!r}")
        words[key] = value.lower()
    if re.fullmatch(r"sxm\d*", words["interface"]):
        words["interface"] = "sxm"
    if words["interface"] not in ("pcie", "sxm"):
        raise ConfigError(f"{at}.interface: expected pcie or sxm, got {entry['interface']!r}")
    ram = entry.get("ram")
    match = _RAM.fullmatch(ram) if isinstance(ram, str) else None
    if match is None:
        raise ConfigError(f"{at}.ram: expected a size like \"80Gi\", got {ram!r}")
    count = entry.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 64:
        raise ConfigError(f"{at}.count: expected an integer 1..64, got {count!r}")
    uuids = entry.get("uuids", [])
    if not isinstance(uuids, list) or not all(isinstance(u, str) and u for u in uuids) \
            or len(uuids) not in (0, count):
        raise ConfigError(f"{at}.uuids: expected {count} UUID strings, got {uuids!r}")
    return [GPURecord(index=first + n, uuid=uuids[n] if uuids else f"static-{first + n}",
                      vendor=words["vendor"], model=words["model"],
                      memory_bytes=int(match[1]) * GI, interface=words["interface"],
                      name=f"{words['model']} (declared)")
            for n in range(count)]


class StaticProbe:
    """The ``static`` plugin."""

    def __init__(self, gpus: list[GPURecord] | None = None) -> None:
        self.gpus = list(gpus or [])

    @hookimpl
    def p2pakash_configure(self, config: PluginConfig) -> None:
        table = config.section(NAME)
        for key in table:
            if key != "gpus":
                raise ConfigError(f"{config.where(NAME)}: {key}: unknown key (expected gpus)")
        self.gpus = parse_gpus(table.get("gpus", []), f"{config.where(NAME)}: gpus")

    @hookimpl
    def p2pakash_probe_gpus(self, config: PluginConfig) -> list[GPURecord]:
        return list(self.gpus)
