"""Fuzz the files a user hands a node: the TOML config and the genesis JSON.

Properties:
* ``load_config`` on any bytes (mutated real configs, generated TOML, deep nesting, bad
  UTF-8) returns a NodeConfig or raises ConfigError; a config it accepts survives
  ``dump_config`` and loads back equal.
* ``load_genesis`` on any bytes (mutated and generated documents, deep nesting, huge
  numbers, bad UTF-8) returns a GenesisDoc or raises ConfigError; an accepted document
  passes ``validate`` and ``check_doc(doc.to_json())`` gives it back.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st

from p2pakash.config import NodeConfig, dump_config, load_config
from p2pakash.errors import ConfigError
from p2pakash.ledger.genesis import check_doc, load_genesis
from tests.fuzz.support import fuzz_settings, only_ours
from tests.ledger.helpers import genesis

ROOT = Path(__file__).resolve().parents[2]
TOML_SEEDS = [p.read_bytes() for p in sorted(ROOT.glob("configs/**/*.toml"))] + [
    b'chain_id = "c"\n[provider]\ncpu = 2.5\nmemory = "4Gi"\nstorage = {ephemeral = "1Ti"}\n'
    b'attributes = {region = "eu"}\npricing = "akash-script"\n'
    b'[provider.akash-script]\npath = "/bin/true"\ntimeout = 2\n',
]
GENESIS_SEED = json.dumps(genesis().to_json(), indent=1).encode()
TMP = Path(tempfile.mkdtemp(prefix="p2pakash-fuzz-"))


def write(name: str, data: bytes) -> Path:
    path = TMP / name
    path.write_bytes(data)
    return path


@st.composite
def text_mutation(draw: st.DrawFn, seeds: list[bytes], tokens: list[bytes]) -> bytes:
    out = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(out)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        if op == "insert":
            out[pos:pos] = draw(st.sampled_from(tokens) | st.binary(max_size=4))
        elif op == "delete":
            del out[pos:pos + draw(st.integers(1, 30))]
        elif op == "replace" and pos < len(out):
            out[pos] = draw(st.integers(0, 255))
        else:
            del out[pos:]
    return bytes(out)


def nested(open_: bytes, close: bytes) -> st.SearchStrategy[bytes]:
    return st.integers(50, 3000).map(lambda n: open_ * n + close * n)


# ---------------------------------------------------------------- config TOML

TOML_TOKENS = [b"[", b"]", b"{", b"}", b"=", b'"', b"'''", b"\n", b"[[", b"]]", b"nan", b"inf",
               b"-0", b"1e999", b"99999999999999999999", b"0x7f", b"true", b"1979-05-27",
               b"\xff", b"\x00", b".", b"a.b.c", b"[p2p]", b"[provider]", b"\\u0000"]

scalars = st.one_of(st.integers(-(2**70), 2**70), st.floats(), st.booleans(),
                    st.text(max_size=12),
                    st.sampled_from(["127.0.0.1:1", "[::1]:80", "a" * 40 + "@h:1", "8Gi",
                                     "info", "json", "fake", "podman", "linear", "-1"]))
toml_values = st.recursive(scalars, lambda c: st.lists(c, max_size=3), max_leaves=6)
SECTIONS = [f.name for f in attrs.fields(NodeConfig)]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


@st.composite
def generated_toml(draw: st.DrawFn) -> bytes:
    lines = [f"chain_id = {toml_value(draw(st.sampled_from(['p2pakash-local', '', 'x' * 60])))}"]
    keys = st.sampled_from(["listen", "d", "d_lo", "level", "cpu", "memory", "storage",
                            "seeds", "max_frame_size", "timeout_propose", "home", "moniker",
                            "ping_timeout", "bond", "pricing", "executor", "attributes"])
    for section in draw(st.lists(st.sampled_from(SECTIONS), max_size=3, unique=True)):
        lines.append(f"[{section}]")
        for key in draw(st.lists(keys | st.text(min_size=1, max_size=6).map(json.dumps),
                                 max_size=4, unique=True)):
            lines.append(f"{key} = {toml_value(draw(toml_values))}")
    return "\n".join(lines).encode()


def check_config(data: bytes) -> None:
    path = write("config.toml", data)
    cfg = only_ours(load_config, path, allowed=(ConfigError,))
    if cfg is not None:
        again = write("again.toml", dump_config(cfg).encode())
        assert load_config(again) == cfg


@fuzz_settings(200)
@given(text_mutation(TOML_SEEDS, TOML_TOKENS) | generated_toml()
       | nested(b"[", b"]").map(lambda d: b"a = " + d)
       | nested(b"{b = ", b"}").map(lambda d: b"a = " + d.replace(b"}", b"1}", 1))
       | st.binary(max_size=100))
def test_config_only_raises_config_error(data: bytes) -> None:
    check_config(data)


def test_config_seeds_load() -> None:
    for seed in TOML_SEEDS:
        check_config(seed)


# ---------------------------------------------------------------- genesis JSON

JSON_TOKENS = [b"[", b"]", b"{", b"}", b",", b":", b'"', b"null", b"NaN", b"Infinity", b"-0",
               b"1e400", b"9" * 5000, b"\\ud800", b"\xff", b"true", b'"params":{}',
               b'"moniker":"' + b"m" * 80 + b'"']
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=8)


@st.composite
def genesis_replaced(draw: st.DrawFn) -> bytes:
    doc = genesis().to_json()
    section = draw(st.sampled_from(["chain_id", "genesis_time_ms", "accounts", "validators",
                                    "params", "extra"]))
    if section in ("accounts", "validators") and doc[section] and draw(st.booleans()):
        item = draw(st.sampled_from(doc[section]))
        item[draw(st.sampled_from([*sorted(item), "x"]))] = draw(json_values)
    elif section == "params" and draw(st.booleans()):
        doc["params"][draw(st.sampled_from(sorted(doc["params"])))] = draw(json_values)
    else:
        doc[section] = draw(json_values)
    return json.dumps(doc).encode()


def check_genesis(data: bytes) -> None:
    doc = only_ours(load_genesis, write("genesis.json", data), allowed=(ConfigError,))
    if doc is not None:
        doc.validate()
        assert check_doc(doc.to_json(), "again") == doc


@fuzz_settings(300)
@given(text_mutation([GENESIS_SEED], JSON_TOKENS) | genesis_replaced()
       | nested(b"[", b"]") | nested(b'{"a":', b"}") | st.binary(max_size=100))
def test_genesis_only_raises_config_error(data: bytes) -> None:
    check_genesis(data)


def test_genesis_regressions() -> None:
    # found by this fuzzer: each escaped as RecursionError, ValueError or UnicodeDecodeError
    for data in (b"[" * 100_000, b'{"chain_id": "c", "genesis_time_ms": ' + b"9" * 5000 + b"}",
                 b'{"chain_id": "\xff"}'):
        try:
            load_genesis(write("genesis.json", data))
        except ConfigError as exc:
            assert "genesis.json" in str(exc)
        else:
            raise AssertionError("accepted")


def test_config_regressions() -> None:
    # found by this fuzzer: tomllib's recursion escaped as RecursionError
    for data in (b"a = " + b"[" * 5000 + b"]" * 5000, b"a = " + b"{b=" * 3000 + b"1" + b"}" * 3000):
        try:
            load_config(write("config.toml", data))
        except ConfigError as exc:
            assert "config.toml" in str(exc)
        else:
            raise AssertionError("accepted")
