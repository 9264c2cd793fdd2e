"""GPU probes: NVML (through a pynvml stand-in fed with real device data), static, names."""

from __future__ import annotations

import logging
import sys
import tomllib

import pynvml
import pytest

from p2pakash.errors import ConfigError
from p2pakash.plugins.gpu_names import marketed_gib, normalise
from p2pakash.plugins.gpu_nvml import NvmlProbe
from p2pakash.plugins.manager import PluginManager
from p2pakash.plugins.types import GI, GPURecord, PluginConfig
from tests.plugins import fake_pynvml as fake

MIB = 1024**2


@pytest.mark.parametrize(("name", "mib", "model", "ram", "interface"), [
    ("NVIDIA H100 80GB HBM3", 81559, "h100", "80Gi", "sxm"),
    ("NVIDIA A100-SXM4-40GB", 40960, "a100", "40Gi", "sxm"),
    ("NVIDIA A100-SXM4-80GB", 81920, "a100", "80Gi", "sxm"),
    ("NVIDIA A100 80GB PCIe", 81920, "a100", "80Gi", "pcie"),
    ("NVIDIA A100-PCIE-40GB", 40960, "a100", "40Gi", "pcie"),
    ("NVIDIA GeForce RTX 4090", 24564, "rtx4090", "24Gi", "pcie"),
    ("NVIDIA GeForce RTX 3090 Ti", 24564, "rtx3090ti", "24Gi", "pcie"),
    ("Tesla T4", 15360, "t4", "16Gi", "pcie"),
    ("Tesla V100-SXM2-16GB", 16160, "v100", "16Gi", "sxm"),
    ("Tesla V100-PCIE-32GB", 32510, "v100", "32Gi", "pcie"),
    ("NVIDIA L40S", 46068, "l40s", "48Gi", "pcie"),
    ("NVIDIA L4", 23034, "l4", "24Gi", "pcie"),
    ("NVIDIA A10G", 23028, "a10g", "24Gi", "pcie"),
    ("NVIDIA H100 PCIe", 81559, "h100", "80Gi", "pcie"),
    ("NVIDIA H100 NVL", 95830, "h100", "94Gi", "pcie"),
    ("NVIDIA H200", 143771, "h200", "141Gi", "sxm"),
    ("NVIDIA RTX A6000", 49140, "a6000", "48Gi", "pcie"),
    ("NVIDIA RTX 6000 Ada Generation", 49140, "rtx6000ada", "48Gi", "pcie"),
    ("Quadro RTX 8000", 48601, "rtx8000", "48Gi", "pcie"),
])
def test_names_normalise_to_akash_keys(name: str, mib: int, model: str, ram: str,
                                       interface: str) -> None:
    gpu = normalise(name, mib * MIB)
    assert (gpu.vendor, gpu.model, gpu.ram, gpu.interface) == ("nvidia", model, ram, interface)


def test_marketed_size_snaps_up() -> None:
    assert marketed_gib(15360 * MIB) == 16
    assert marketed_gib(16 * GI) == 16
    assert marketed_gib(int(16.3 * GI)) == 16  # within 2%
    assert marketed_gib(17 * GI) == 20
    assert marketed_gib(1000 * GI) == 1000


def test_nvml_probe_reports_every_device() -> None:
    devices = [fake.H100_SXM, fake.A100_SXM4_40, fake.RTX_4090, fake.TESLA_T4, fake.L40S,
               fake.A10G]
    module, state = fake.make(devices)
    records = NvmlProbe(module).probe()
    assert [(r.index, r.model, r.ram, r.interface) for r in records] == [
        (0, "h100", "80Gi", "sxm"), (1, "a100", "40Gi", "sxm"), (2, "rtx4090", "24Gi", "pcie"),
        (3, "t4", "16Gi", "pcie"), (4, "l40s", "48Gi", "pcie"), (5, "a10g", "24Gi", "pcie")]
    h100, a100, rtx = records[:3]
    assert h100 == GPURecord(index=0, uuid=fake.H100_SXM.uuid, vendor="nvidia", model="h100",
                             memory_bytes=80 * GI, interface="sxm", driver="550.54.15",
                             utilisation=37, ecc_errors=0, name="NVIDIA H100 80GB HBM3")
    assert h100.attribute_key == "vendor/nvidia/model/h100/ram/80Gi/interface/sxm"
    assert a100.ecc_errors == 2
    assert (rtx.ecc_errors, rtx.utilisation) == (None, 99)  # GeForce: ECC not supported
    assert state.calls == ["nvmlInit", "nvmlShutdown"]


def test_nvml_bytes_strings_are_decoded() -> None:
    module, _ = fake.make([fake.TESLA_T4], driver="535.129.03")
    original = module.nvmlDeviceGetName
    module.nvmlDeviceGetName = lambda h: original(h).encode()
    module.nvmlSystemGetDriverVersion = lambda: b"535.129.03"
    [record] = NvmlProbe(module).probe()
    assert (record.name, record.driver) == ("Tesla T4", "535.129.03")


def test_a_lost_device_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    lost = fake.Device("NVIDIA A100-SXM4-80GB", "GPU-dead", 81920, broken=True)
    module, state = fake.make([fake.H100_SXM, lost, fake.L40S])
    with caplog.at_level(logging.WARNING, logger="p2pakash.plugins.gpu_nvml"):
        records = NvmlProbe(module).probe()
    assert [r.model for r in records] == ["h100", "l40s"]
    assert [r.index for r in records] == [0, 2]
    assert "device 1 skipped: GPU is lost" in caplog.text
    assert state.calls[-1] == "nvmlShutdown"


@pytest.mark.parametrize("code", [pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
                                  pynvml.NVML_ERROR_DRIVER_NOT_LOADED])
def test_no_nvml_library_means_no_gpus_and_one_info_line(
        code: int, caplog: pytest.LogCaptureFixture) -> None:
    module, state = fake.make([fake.H100_SXM], init_error=code)
    with caplog.at_level(logging.DEBUG, logger="p2pakash.plugins.gpu_nvml"):
        assert NvmlProbe(module).probe() == []
    assert [r.levelname for r in caplog.records] == ["INFO"]
    assert "reporting no GPUs" in caplog.text
    assert state.calls == ["nvmlInit"]


def test_real_pynvml_on_this_gpu_less_host(caplog: pytest.LogCaptureFixture) -> None:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this host has a working NVML: the no-library path cannot run here")
    with caplog.at_level(logging.DEBUG, logger="p2pakash.plugins.gpu_nvml"):
        assert NvmlProbe().probe() == []
    assert len(caplog.records) == 1 and caplog.records[0].levelname == "INFO"


def test_pynvml_not_installed(monkeypatch: pytest.MonkeyPatch,
                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    with caplog.at_level(logging.DEBUG, logger="p2pakash.plugins.gpu_nvml"):
        assert NvmlProbe().probe() == []
    assert len(caplog.records) == 1 and "pynvml is not importable" in caplog.text


STATIC = """
[provider]
entry_points = false
gpu_probes = ["nvml", "static"]

[[provider.static.gpus]]
model = "a100"
ram = "80Gi"
interface = "SXM4"
count = 2

[[provider.static.gpus]]
model = "rtx4090"
ram = "24Gi"
uuids = ["GPU-rtx-a"]
"""


def test_manager_runs_nvml_and_static_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    module, _ = fake.make([fake.H100_SXM])
    monkeypatch.setitem(sys.modules, "pynvml", module)  # what `import pynvml` gives
    manager = PluginManager.load(PluginConfig.from_table(tomllib.loads(STATIC)["provider"]))
    records = manager.probe_gpus()
    assert [(r.model, r.ram, r.interface, r.uuid) for r in records] == [
        ("h100", "80Gi", "sxm", fake.H100_SXM.uuid), ("a100", "80Gi", "sxm", "static-0"),
        ("a100", "80Gi", "sxm", "static-1"), ("rtx4090", "24Gi", "pcie", "GPU-rtx-a")]


@pytest.mark.parametrize(("entry", "message"), [
    ({"ram": "80Gi"}, r"model: expected a lower-case name"),
    ({"model": "a100", "ram": "80GB"}, r"ram: expected a size like"),
    ({"model": "a100", "ram": "80Gi", "interface": "usb"}, r"interface: expected pcie or sxm"),
    ({"model": "a100", "ram": "80Gi", "count": 0}, r"count: expected an integer 1\.\.64"),
    ({"model": "a100", "ram": "80Gi", "count": 2, "uuids": ["x"]}, r"uuids: expected 2 UUID"),
    ({"model": "a100", "ram": "80Gi", "colour": "red"}, r"colour: unknown key"),
])
def test_static_gpu_errors_name_the_entry(entry: dict[str, object], message: str) -> None:
    cfg = PluginConfig.from_table({"entry_points": False, "gpu_probes": ["static"],
                                   "static": {"gpus": [entry]}})
    with pytest.raises(ConfigError, match=r"\[provider\]: static: gpus\[0\]\." + message):
        PluginManager.load(cfg)


def test_unknown_probe_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="gpu_probes: unknown probe 'rocm'"):
        PluginManager.load(PluginConfig.from_table({"gpu_probes": ["rocm"]}))
