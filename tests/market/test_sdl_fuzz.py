"""Property: whatever the text, parse_sdl returns an SDL or raises SDLError, nothing else."""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pakash.errors import SDLError
from p2pakash.market.sdl import groups_json, manifest_json, parse_sdl, version_hash
from tests.market.test_sdl_corpus import CORPUS, TETRIS

SEEDS = [
    "fixtures/chain-sdk/input-v2.0/ip-endpoint.yaml",
    "fixtures/chain-sdk/input-v2.0/storage-classes.yaml",
    "fixtures/chain-sdk/input-v2.0/http-options.yaml",
    "fixtures/chain-sdk/input-v2.1/shared-ip.yaml",
    "fixtures/chain-sdk/input-v2.1/tee-cpu-gpu.yaml",
    "fixtures/chain-sdk/input-v2.1/credentials.yaml",
    "fixtures/chain-sdk/ts/gpu_basic_ram_interface.sdl.yml",
    "awesome-akash/Llama-3-70B__deploy.yaml",
    "awesome-akash/codex__deploy.yml",
]
TEXTS = [TETRIS] + [(CORPUS / f).read_text() for f in SEEDS if (CORPUS / f).exists()]

TOKENS = [":", "- ", "&a ", "*a", "{", "}", "[", "]", "<<: ", "!!binary ", "'", '"', "\t",
          "\n", "  ", "#", "~", "null", "true", "yes", "-1", "0x10", "1e999",
          "18446744073709551617",
          "Gi", "m", "ip: x", "global: true", "version: '2.1'", "\x00", "\ufeff", "…"]


def check(text: str) -> None:
    try:
        sdl = parse_sdl(text, source="fuzz")
    except SDLError as exc:
        assert str(exc).startswith("fuzz: ")
        return
    json.dumps([manifest_json(sdl), groups_json(sdl)])
    assert len(version_hash(sdl)) == 32


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(TEXTS))
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "insert", "indent", "dedent",
                                       "truncate", "swap"]))
        if action == "delete":
            del lines[i]
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "insert":
            at = draw(st.integers(0, len(lines[i])))
            token = draw(st.sampled_from(TOKENS) | st.text(max_size=5))
            lines[i] = lines[i][:at] + token + lines[i][at:]
        elif action == "indent":
            lines[i] = "  " + lines[i]
        elif action == "dedent":
            lines[i] = lines[i][2:]
        elif action == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))] + "\n"
        else:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
    return "".join(lines)


values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
    | st.text(max_size=12) | st.sampled_from(["1Gi", "100m", "uakt", "ip", "/data", "80"]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8) | st.sampled_from(
        ["port", "as", "to", "global", "size", "units", "attributes", "vendor", "nvidia",
         "persistent", "class", "amount", "denom", "profile", "count", "mount"]),
        children, max_size=3),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


@st.composite
def replaced(draw: st.DrawFn) -> str:
    data = yaml.safe_load(draw(st.sampled_from(TEXTS)))
    path = draw(st.sampled_from(_paths(data)[1:]))
    target = data
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = draw(values)
    return yaml.safe_dump(data, allow_unicode=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_text_mutations_only_raise_sdl_error(text: str) -> None:
    check(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replaced())
def test_value_replacements_only_raise_sdl_error(text: str) -> None:
    check(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_arbitrary_text_only_raises_sdl_error(text: str) -> None:
    check(text)
