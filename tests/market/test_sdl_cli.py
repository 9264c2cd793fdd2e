"""``p2pakash sdl``: exit codes, one line per problem, ``--json`` records, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from p2pakash.cli.sdl import command
from p2pakash.market.sdl import parse_sdl, version_hash
from tests.market.test_sdl_corpus import TETRIS, corpus_dir


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    made = {
        "good": ("good.yaml", TETRIS.encode()),
        "bad": ("bad.yaml", TETRIS.replace("count: 1", "count: 0").encode()),
        "binary": ("binary.bin", bytes(range(256)) * 4),
        "list": ("list.yaml", b"- just\n- a list\n"),
        "big": ("big.yaml", b"# padding\n" * (1024 * 1024)),  # 10 MiB
    }
    out = {}
    for key, (name, data) in made.items():
        out[key] = tmp_path / name
        out[key].write_bytes(data)
    out["missing"] = tmp_path / "missing.yaml"
    out["dir"] = tmp_path
    return out


def run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(command, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_validate_valid_file(files: dict[str, Path]) -> None:
    assert run("validate", files["good"]) == (0, "")


@pytest.mark.parametrize(("key", "needle"), [
    ("bad", "count must be >= 1"), ("binary", "not UTF-8 text"),
    ("list", "expected a mapping at the top level"), ("big", "file too large"),
    ("missing", "cannot read: No such file or directory"), ("dir", "cannot read"),
])
def test_validate_bad_inputs_one_line_each(files: dict[str, Path], key: str,
                                           needle: str) -> None:
    code, output = run("validate", files["good"], files[key])
    assert code == 1
    (line,) = output.splitlines()
    assert line.startswith(f"{files[key]}: ") and needle in line


def test_validate_json_records(files: dict[str, Path]) -> None:
    code, output = run("validate", "--json", files["good"], files["bad"], files["binary"])
    assert code == 1
    records = [json.loads(line) for line in output.splitlines()]
    assert [r["file"] for r in records] == [str(files[k]) for k in ("good", "bad", "binary")]
    assert [r["valid"] for r in records] == [True, False, False]
    good, bad, _ = records
    assert set(good) == {"file", "valid", "errors", "version_hash"}
    assert good["errors"] == [] and good["version_hash"] == version_hash(
        parse_sdl(TETRIS)).hex()
    assert bad["version_hash"] is None
    assert len(bad["errors"]) == 1 and "count must be >= 1" in bad["errors"][0]
    assert not bad["errors"][0].startswith(str(files["bad"]))


def test_manifest_and_groups_print_akash_json(files: dict[str, Path]) -> None:
    code, output = run("manifest", files["good"])
    assert code == 0
    manifest = json.loads(output)
    assert manifest[0]["services"][0]["name"] == "tetris"
    code, output = run("groups", files["good"])
    assert code == 0
    assert json.loads(output)[0]["resources"][0]["price"] == {
        "denom": "uakt", "amount": "1000.000000000000000000"}
    root = corpus_dir()
    golden = root / "golden/v2.1/shared-ip/group-specs.json"
    code, output = run("groups", root / "fixtures/chain-sdk/input-v2.1/shared-ip.yaml")
    assert json.loads(output) == json.loads(golden.read_text())


def test_manifest_of_bad_file_is_one_clean_line(files: dict[str, Path]) -> None:
    result = CliRunner().invoke(command, ["manifest", str(files["binary"])])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"{files['binary']}: not UTF-8 text")


def test_usage_errors_exit_2() -> None:
    assert run("validate")[0] == 2


def test_real_entry_point_no_traceback(files: dict[str, Path]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "p2pakash", "sdl", "validate", str(files["good"]),
         str(files["big"]), str(files["binary"]), str(files["missing"])],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert len(proc.stdout.splitlines()) == 3
