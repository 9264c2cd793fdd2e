"""A stand-in for the ``pynvml`` module on a host with GPUs, fed with real device data.

It has pynvml's function names and signatures and raises pynvml's own NVMLError classes
(imported from the real nvidia-ml-py, which imports fine without a driver), so the probe
runs exactly the code path it runs against libnvidia-ml on a GPU host. Device names and
memory totals are what NVML reports for those cards.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import pynvml

MIB = 1024**2


@dataclass
class Device:
    name: str
    uuid: str
    memory_mib: int
    utilisation: int = 0
    ecc_uncorrected: int | None = 0  # None: the card has no ECC (NOT_SUPPORTED)
    broken: bool = False  # every query fails with NVML_ERROR_GPU_IS_LOST


# Names and NVML totals of real cards (nvidia-smi --query-gpu=name,memory.total).
H100_SXM = Device("NVIDIA H100 80GB HBM3", "GPU-5d0a5b6c-8e5f-3c1d-9b0e-2a7d4f1e6c3b", 81559,
                  utilisation=37, ecc_uncorrected=0)
A100_SXM4_40 = Device("NVIDIA A100-SXM4-40GB", "GPU-0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
                      40960, utilisation=3, ecc_uncorrected=2)
RTX_4090 = Device("NVIDIA GeForce RTX 4090", "GPU-9c8b7a69-5847-3625-1403-f2e1d0c9b8a7", 24564,
                  utilisation=99, ecc_uncorrected=None)
TESLA_T4 = Device("Tesla T4", "GPU-1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809", 15360)
L40S = Device("NVIDIA L40S", "GPU-2b3c4d5e-6f70-8192-a3b4-c5d6e7f8091a", 46068)
A10G = Device("NVIDIA A10G", "GPU-3c4d5e6f-7081-92a3-b4c5-d6e7f8091a2b", 23028)


@dataclass
class State:
    devices: list[Device]
    driver: str = "550.54.15"
    init_error: int | None = None  # an NVML_ERROR_* code nvmlInit fails with
    calls: list[str] = field(default_factory=list)


def make(devices: list[Device], *, driver: str = "550.54.15",
         init_error: int | None = None) -> tuple[types.ModuleType, State]:
    """A module object with pynvml's API over ``devices``, and its call log."""
    state = State(devices=devices, driver=driver, init_error=init_error)
    mod = types.ModuleType("pynvml")
    for name in dir(pynvml):
        if name.startswith(("NVMLError", "NVML_")):
            setattr(mod, name, getattr(pynvml, name))
    initialised = {"yes": False}

    def fail(code: int) -> None:
        raise pynvml.NVMLError(code)

    def check() -> None:
        if not initialised["yes"]:
            fail(pynvml.NVML_ERROR_UNINITIALIZED)

    def device(handle: int) -> Device:
        check()
        dev = state.devices[handle]
        if dev.broken:
            fail(pynvml.NVML_ERROR_GPU_IS_LOST)
        return dev

    def nvmlInit() -> None:
        state.calls.append("nvmlInit")
        if state.init_error is not None:
            fail(state.init_error)
        initialised["yes"] = True

    def nvmlShutdown() -> None:
        state.calls.append("nvmlShutdown")
        check()
        initialised["yes"] = False

    def nvmlSystemGetDriverVersion() -> str:
        check()
        return state.driver

    def nvmlDeviceGetCount() -> int:
        check()
        return len(state.devices)

    def nvmlDeviceGetHandleByIndex(index: int) -> int:
        check()
        if not 0 <= index < len(state.devices):
            fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return index

    def nvmlDeviceGetName(handle: int) -> str:
        return device(handle).name

    def nvmlDeviceGetUUID(handle: int) -> str:
        return device(handle).uuid

    def nvmlDeviceGetMemoryInfo(handle: int) -> types.SimpleNamespace:
        total = device(handle).memory_mib * MIB
        return types.SimpleNamespace(total=total, free=total - 512 * MIB, used=512 * MIB)

    def nvmlDeviceGetUtilizationRates(handle: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(gpu=device(handle).utilisation, memory=0)

    def nvmlDeviceGetTotalEccErrors(handle: int, error_type: int, counter_type: int) -> int:
        dev = device(handle)
        assert error_type == pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
        assert counter_type == pynvml.NVML_VOLATILE_ECC
        if dev.ecc_uncorrected is None:
            fail(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return dev.ecc_uncorrected or 0

    for fn in (nvmlInit, nvmlShutdown, nvmlSystemGetDriverVersion, nvmlDeviceGetCount,
               nvmlDeviceGetHandleByIndex, nvmlDeviceGetName, nvmlDeviceGetUUID,
               nvmlDeviceGetMemoryInfo, nvmlDeviceGetUtilizationRates,
               nvmlDeviceGetTotalEccErrors):
        assert hasattr(pynvml, fn.__name__), fn.__name__  # the real API has this name
        setattr(mod, fn.__name__, fn)
    return mod, state
