"""Fuzz the parsing of podman API answers: container labels (``_key``) and the multiplexed
log body (``_frames``). Property: a value, never an exception, however the JSON or the bytes
are shaped; a log body yields at most one frame per 8 bytes (no declared length allocates).
"""

from __future__ import annotations

import struct

from hypothesis import example, given
from hypothesis import strategies as st

from p2pakash.executor.base import LABEL_REPLICA, LABEL_SERVICE
from p2pakash.executor.podman import _frames, _key
from tests.fuzz.support import bounded_memory, fuzz_settings

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=6)
labels = st.dictionaries(st.sampled_from([LABEL_SERVICE, LABEL_REPLICA, "x"]), json_values,
                         max_size=3)


@fuzz_settings(150)
@given(st.dictionaries(st.sampled_from(["Labels", "Id", "State"]), labels | json_values,
                       max_size=3))
@example({"Labels": {LABEL_SERVICE: "web", LABEL_REPLICA: "²"}})
@example({"Labels": True})  # found by this test: TypeError (a bool is not a label map)
def test_container_key(container: dict[str, object]) -> None:
    name, replica = _key(container)
    assert isinstance(name, str) and isinstance(replica, int)


@fuzz_settings(300)
@given(st.lists(st.tuples(st.integers(0, 3), st.binary(max_size=20),
                          st.sampled_from([None, 0, 2**32 - 1])), max_size=5),
       st.binary(max_size=7))
def test_log_frames(parts: list[tuple[int, bytes, int | None]], tail: bytes) -> None:
    body = b"".join(struct.pack(">BxxxL", s, len(d) if n is None else n) + d
                    for s, d, n in parts) + tail
    with bounded_memory(1 << 20):
        frames = _frames(body)
    assert len(frames) <= len(body) // 8
    assert all(stream in ("stdout", "stderr") for stream, _ in frames)
