"""``nvml`` GPU probe through nvidia-ml-py (``import pynvml``).

Rules and invariants:
* One probe = nvmlInit, the driver version, then per index: name, UUID, memory total,
  utilisation and volatile uncorrected ECC errors; nvmlShutdown always follows a
  successful init. Names are normalised to Akash keys by ``gpu_names.normalise``.
* No GPU stack (pynvml not importable, libnvidia-ml missing, driver not loaded, any other
  failure of nvmlInit) -> no GPUs and one info line; the provider runs CPU-only.
* Per-device counters a card does not support (NVML_ERROR_NOT_SUPPORTED, e.g. ECC on a
  GeForce) become None; any other NVML error on a device skips that device with a warning.
* ``nvml`` may be injected (any object with pynvml's names); by default the real module.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from p2pakash.plugins.gpu_names import normalise
from p2pakash.plugins.hookspecs import hookimpl
from p2pakash.plugins.types import GPURecord, PluginConfig

log = logging.getLogger(__name__)

NAME = "nvml"


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NvmlProbe:
    """The ``nvml`` plugin."""

    def __init__(self, nvml: Any = None) -> None:
        self._nvml = nvml

    def _module(self) -> Any:
        if self._nvml is not None:
            return self._nvml
        try:
            return importlib.import_module("pynvml")
        except ImportError as exc:
            log.info("GPU probe nvml: pynvml is not importable (%s); reporting no GPUs", exc)
            return None

    @hookimpl
    def p2pakash_probe_gpus(self, config: PluginConfig) -> list[GPURecord]:
        return self.probe()

    def probe(self) -> list[GPURecord]:
        nvml = self._module()
        if nvml is None:
            return []
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            log.info("GPU probe nvml: %s (nvmlInit); reporting no GPUs", exc)
            return []
        try:
            driver = _text(nvml.nvmlSystemGetDriverVersion())
            records = []
            for index in range(int(nvml.nvmlDeviceGetCount())):
                try:
                    records.append(self._device(nvml, index, driver))
                except nvml.NVMLError as exc:
                    log.warning("GPU probe nvml: device %d skipped: %s", index, exc)
            return records
        finally:
            try:
                nvml.nvmlShutdown()
            except nvml.NVMLError as exc:  # pragma: no cover - shutdown after a good init
                log.warning("GPU probe nvml: nvmlShutdown: %s", exc)

    def _device(self, nvml: Any, index: int, driver: str) -> GPURecord:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        name = _text(nvml.nvmlDeviceGetName(handle))
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        total = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
        utilisation = self._optional(
            nvml, lambda: int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        ecc = self._optional(nvml, lambda: int(nvml.nvmlDeviceGetTotalEccErrors(
            handle, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC)))
        model = normalise(name, total)
        return GPURecord(index=index, uuid=uuid, vendor=model.vendor, model=model.model,
                         memory_bytes=model.memory_bytes, interface=model.interface,
                         driver=driver, utilisation=utilisation, ecc_errors=ecc, name=name)

    @staticmethod
    def _optional(nvml: Any, read: Any) -> int | None:
        try:
            value = read()
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) == nvml.NVML_ERROR_NOT_SUPPORTED:
                return None
            raise
        return value if isinstance(value, int) and value >= 0 else None
