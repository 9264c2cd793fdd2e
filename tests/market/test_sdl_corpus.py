"""Every file of the shared Akash SDL corpus: verdicts, error texts, golden JSON parity."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from p2pakash.errors import SDLError
from p2pakash.market.sdl import groups_json, manifest_json, parse_sdl, version_hash

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "sdl"


def corpus_dir() -> Path:
    if not (CORPUS / "MANIFEST.tsv").exists():
        pytest.skip(f"SDL corpus not found at {CORPUS}")
    return CORPUS


def manifest_rows() -> list[dict[str, str]]:
    if not (CORPUS / "MANIFEST.tsv").exists():
        return []
    with open(CORPUS / "MANIFEST.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [row for row in rows if row["expected"] in ("valid", "invalid")]


# Rows whose ``expected-error`` is a description rather than Akash's literal text (or that
# have none): the substring our message must contain, with the description it stands for.
ERROR_TEXT = {
    "input-invalid/count-zero.yaml": "count must be >= 1",  # deployment count 0
    "input-invalid/empty-image.yaml": "has empty image name",
    "input-invalid/missing-image.yaml": "has empty image name",
    "input-invalid/endpoint-not-used.yaml": "declared but never used",
    "input-invalid/invalid-endpoint-name.yaml": "is not a valid name",
    "input-invalid/invalid-port.yaml": "port value must be 0 < value <= 65535",
    "input-invalid/missing-deployment.yaml": "no groups",  # zero groups
    "input-invalid/negative-cpu.yaml": "invalid syntax",  # ParseUint invalid syntax
    "input-invalid/persistent-without-mount.yaml": "to have mount",
    "input-invalid/v2.1-reclamation-bad-window.yaml": "SDL invalid: reclamation min_window",
    "input-invalid/v2.1-tee-cpu-gpu-no-gpu.yaml": "tee type requires gpu resources",
    "simple-reclamation-invalid.yaml": "SDL invalid: invalid reclamation min_window",
    "v2.1-reclamation-invalid.yaml": "SDL invalid: invalid reclamation min_window",
    "simple-reclamation-zero.yaml": "SDL invalid: reclamation min_window must be > 0",
    "v2.1-reclamation-zero.yaml": "SDL invalid: reclamation min_window must be > 0",
    "v2.1-credentials-error.yaml": "service Credentials missing",
    "ts/gpu_invalid_interface.sdl.yml": 'invalid GPU interface sxm4. expected "pcie|sxm"',
    "ts/gpu_invalid_no_attributes.sdl.yml": "GPU attributes must be present if units > 0",
    "ts/gpu_invalid_no_vendor.sdl.yml": "at least one vendor must be set",
    "ts/gpu_invalid_no_vendor_name.sdl.yml": "at least one vendor must be set",
    "ts/gpu_invalid_vendor.sdl.yml": "unsupported GPU vendor (invalidvendor)",
    "ts/gpu_no_gpu_invalid_has_attributes.sdl.yml": "at least one vendor must be set",
    "ts/persistent_storage_invalid.sdl.yml": "ram storage class cannot be persistent",
    "awesome-akash/ghost__deploy-mysql.yaml": "references to no-existing compute volume",
    "awesome-akash/steamcmd__deploy.yaml": "port value must be 0 < value <= 65535",
    "awesome-akash/codex__deploy.yml": "body size cannot be greater than 104857600 bytes",
}


def expected_error(row: dict[str, str]) -> str:
    for suffix, text in ERROR_TEXT.items():
        if row["file"].endswith(suffix):
            return text
    match = re.search(r"expected-error: (?:contains '([^']+)'|([^;]+);)", row["notes"])
    assert match is not None, f"{row['file']}: no expected-error and no entry in ERROR_TEXT"
    return match.group(1) or match.group(2)


def _id(row: dict[str, str]) -> str:
    return row["file"]


@pytest.mark.parametrize("row", manifest_rows(), ids=_id)
def test_verdict_and_error_text(row: dict[str, str]) -> None:
    path = corpus_dir() / row["file"]
    try:
        sdl = parse_sdl(path.read_text(), source=row["file"])
    except SDLError as exc:
        assert row["expected"] == "invalid", f"rejected a valid file: {exc}"
        message = str(exc)
        assert message.startswith(f"{row['file']}: ")
        assert expected_error(row) in message
        return
    assert row["expected"] == "valid", "accepted an invalid file"
    assert len(version_hash(sdl)) == 32
    json.dumps([manifest_json(sdl), groups_json(sdl)])


def test_corpus_is_all_there() -> None:
    rows = manifest_rows()
    corpus_dir()
    assert sum(r["expected"] == "valid" for r in rows) >= 300
    assert sum(r["expected"] == "invalid" for r in rows) >= 50


def _golden_cases() -> list[tuple[str, str]]:
    golden = CORPUS / "golden"
    return [(version, case.name) for version in ("v2.0", "v2.1")
            for case in sorted((golden / version).iterdir())] if golden.exists() else []


@pytest.mark.parametrize(("version", "name"), _golden_cases())
def test_golden_manifest_and_group_specs(version: str, name: str) -> None:
    root = corpus_dir()
    sdl = parse_sdl((root / f"fixtures/chain-sdk/input-{version}/{name}.yaml").read_text())
    assert sdl.version == version.removeprefix("v")
    golden = root / "golden" / version / name
    assert manifest_json(sdl) == json.loads((golden / "manifest.json").read_text())
    assert groups_json(sdl) == json.loads((golden / "group-specs.json").read_text())


def _ts_normalise(value: Any) -> Any:
    """The TS snapshots predate two renames: memory/storage ``quantity`` and numeric vals."""
    if isinstance(value, list):
        return [_ts_normalise(v) for v in value]
    if isinstance(value, dict):
        out = {("size" if k == "quantity" else k): _ts_normalise(v) for k, v in value.items()}
        if set(out) == {"val"}:
            out["val"] = str(out["val"])
        return out
    return value


@pytest.mark.parametrize("name", ["gpu_basic", "gpu_basic_ram", "gpu_basic_ram_interface",
                                  "wordpress"])
def test_console_golden_manifests(name: str) -> None:
    root = corpus_dir()
    sdl = parse_sdl((root / f"fixtures/chain-sdk/ts/{name}.sdl.yml").read_text())
    golden = json.loads((root / f"golden/ts/{name}.manifest.json").read_text())
    assert manifest_json(sdl) == _ts_normalise(golden)


TETRIS = """
version: "2.0"
services:
  tetris:
    image: bsord/tetris
    expose:
      - port: 80
        as: 80
        to:
          - global: true
profiles:
  compute:
    tetris:
      resources:
        cpu: {units: 1}
        memory: {size: 512Mi}
        storage: {size: 512Mi}
  placement:
    akash:
      pricing:
        tetris: {denom: uakt, amount: 1000}
deployment:
  tetris:
    akash: {profile: tetris, count: 1}
"""

# chain-sdk ts/src/sdl/manifest/__snapshots__/generateManifestVersion.spec.ts.snap
TETRIS_JSON = (
    '[{"name":"akash","services":[{"args":null,"command":null,"count":1,"credentials":null,'
    '"env":null,"expose":[{"endpointSequenceNumber":0,"externalPort":80,"global":true,'
    '"hosts":null,"httpOptions":{"maxBodySize":1048576,"nextCases":["error","timeout"],'
    '"nextTimeout":0,"nextTries":3,"readTimeout":60000,"sendTimeout":60000},"ip":"",'
    '"port":80,"proto":"TCP","service":""}],"image":"bsord/tetris","name":"tetris",'
    '"resources":{"cpu":{"units":{"val":"1000"}},"endpoints":[{"sequence_number":0}],'
    '"gpu":{"units":{"val":"0"}},"id":1,"memory":{"size":{"val":"536870912"}},'
    '"storage":[{"name":"default","size":{"val":"536870912"}}]}}]}]'
)
TETRIS_VERSION = bytes([238, 82, 227, 41, 170, 69, 176, 99, 140, 39, 6, 93, 82, 235, 13, 201,
                        47, 103, 4, 25, 75, 198, 60, 100, 53, 197, 111, 181, 73, 221, 237, 125])


def test_version_hash_matches_akash_snapshot() -> None:
    from p2pakash.market.sdl.version import sorted_json

    sdl = parse_sdl(TETRIS)
    assert sorted_json(manifest_json(sdl)).decode() == TETRIS_JSON
    assert hashlib.sha256(TETRIS_JSON.encode()).digest() == TETRIS_VERSION
    assert version_hash(sdl) == TETRIS_VERSION
    assert sdl.version_hash() == TETRIS_VERSION
