"""NVML device names -> Akash GPU model keys, marketed memory and interface.

Rules and invariants:
* The model key is the name lower-cased with vendor and family words dropped (NVIDIA,
  GeForce, Tesla, Quadro), memory and form-factor tokens removed and the rest joined
  without separators: "NVIDIA GeForce RTX 4090" -> ``rtx4090``, "Tesla T4" -> ``t4``,
  "NVIDIA RTX A6000" -> ``a6000``, "NVIDIA RTX 6000 Ada Generation" -> ``rtx6000ada``.
* Memory: a size written in the name ("80GB") wins; otherwise NVML's total is snapped up
  to the nearest marketed size (a 16 GB T4 reports 15 GiB, an L40S 45 GiB of 48).
* Interface: ``sxm`` when the name says SXM or HBM (NVIDIA names its SXM H100 "H100 80GB
  HBM3"), or for models sold only as SXM modules; ``pcie`` otherwise, including "PCIe" and
  "NVL" names. Akash folds ``sxm2``..``sxm5`` into ``sxm``.
"""

from __future__ import annotations

import re

import attrs

from p2pakash.plugins.types import GI

DROP_WORDS = frozenset({"nvidia", "geforce", "tesla", "quadro", "generation", "graphics",
                        "gpu"})
# Models NVIDIA ships only as SXM/NVLink-C2C modules unless the name says PCIe or NVL.
SXM_ONLY = frozenset({"h200", "gh200", "gb200", "b100", "b200", "b300", "h800sxm"})
MARKETED_GIB = (1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 16, 20, 24, 32, 40, 48, 64, 80, 94, 96,
                128, 141, 144, 180, 188, 192, 256, 288)
_MEM_IN_NAME = re.compile(r"^(\d+)(gb|g)$")
_SXM = re.compile(r"^sxm\d*$")
_HBM = re.compile(r"^hbm\d*e?$")


@attrs.frozen(kw_only=True)
class GPUModel:
    vendor: str
    model: str
    memory_bytes: int
    interface: str

    @property
    def ram(self) -> str:
        return f"{self.memory_bytes // GI}Gi"


def marketed_gib(total_bytes: int) -> int:
    """The smallest marketed size not below NVML's total (2% tolerance), in GiB."""
    gib = total_bytes / GI
    for size in MARKETED_GIB:
        if gib <= size * 1.02:
            return size
    return round(gib)


def normalise(name: str, total_memory_bytes: int, *, vendor: str = "nvidia") -> GPUModel:
    """Akash's view of an NVML device: model key, marketed memory and interface."""
    tokens = [t for t in re.split(r"[\s\-_/]+", name.lower()) if t]
    memory_gib = 0
    interface = ""
    kept: list[str] = []
    for token in tokens:
        mem = _MEM_IN_NAME.match(token)
        if token in DROP_WORDS:
            continue
        if mem:
            memory_gib = int(mem[1])
        elif _SXM.match(token) or _HBM.match(token):
            interface = "sxm"
        elif token in ("pcie", "nvl"):
            interface = interface or "pcie"
        else:
            kept.append(re.sub(r"[^a-z0-9]", "", token))
    kept = [t for t in kept if t]
    if len(kept) >= 2 and kept[0] == "rtx" and re.fullmatch(r"a\d+", kept[1]):
        kept = kept[1:]  # "RTX A6000" is Akash's a6000
    model = "".join(kept) or "unknown"
    if not interface:
        interface = "sxm" if model in SXM_ONLY else "pcie"
    if not memory_gib:
        memory_gib = marketed_gib(total_memory_bytes)
    return GPUModel(vendor=vendor, model=model, memory_bytes=memory_gib * GI,
                    interface=interface)
