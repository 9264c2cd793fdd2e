"""atheris (libFuzzer) harnesses for the byte-level decoders: coverage-guided, run by
``make fuzz`` after the hypothesis groups. Usage: ``python fuzz/atheris_targets.py TARGET
[libFuzzer flags]`` with TARGET one of wire, frames, sdl, config.

Each harness calls the decoder on the fuzzer's bytes and lets only the documented error
type pass; anything else is an uncaught exception, which atheris reports as a crash with
the input saved as ``crash-<sha1>`` in the working directory.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from p2pakash import wire
    from p2pakash.config import load_config
    from p2pakash.errors import ConfigError, DecodeError, RemoteProtocolError, SDLError
    from p2pakash.gossip import secret
    from p2pakash.market.sdl import parse_sdl
    from tests.fuzz.support import load_all_modules

load_all_modules()
TAGS = sorted(wire._BY_TAG)
TMP = Path(tempfile.mkdtemp(prefix="p2pakash-atheris-")) / "config.toml"


def wire_target(data: bytes) -> None:
    cls = wire._BY_TAG[TAGS[data[0] % len(TAGS)]].cls if data else object
    try:
        value = wire.decode(data[1:], cls)
    except DecodeError:
        return
    assert wire.encode(value) == data[1:]


def frames_target(data: bytes) -> None:
    reader = secret.FrameReader(bytes(32), max_frame=1024)
    reader.feed(data)
    try:
        for _ in range(len(data) + 1):
            if reader.next_frame() is None:
                return
    except RemoteProtocolError:
        return


def sdl_target(data: bytes) -> None:
    try:
        parse_sdl(data.decode("utf-8", errors="replace"), source="atheris")
    except SDLError:
        return


def config_target(data: bytes) -> None:
    TMP.write_bytes(data)
    try:
        load_config(TMP)
    except ConfigError:
        return


TARGETS = {"wire": wire_target, "frames": frames_target, "sdl": sdl_target,
           "config": config_target}

if __name__ == "__main__":
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()
