"""Fuzz ``parse_sdl`` beyond tests/market/test_sdl_fuzz.py (whose ``check`` is reused):
every corpus file as a seed with byte-level mutations, alias bombs, deep nesting and long
scalars. Property: an SDL or SDLError prefixed by the source, within the deadline and with
bounded memory (an alias bomb must not expand).
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.support import bounded_memory, fuzz_settings
from tests.market.test_sdl_fuzz import check

CORPUS = Path("/work/shared/corpus/sdl")
FILES = sorted(CORPUS.rglob("*.y*ml")) if CORPUS.exists() else []


def bomb(levels: int, width: int) -> str:
    lines = ['a0: &a0 ["x"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + f"\nservices: *a{levels - 1}\nversion: '2.0'\n"


@st.composite
def corpus_mutation(draw: st.DrawFn) -> str:
    text = bytearray(draw(st.sampled_from(FILES)).read_bytes()) if FILES else bytearray()
    for _ in range(draw(st.integers(1, 5))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if op == "flip" and pos < len(text):
            text[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            text[pos:pos] = draw(st.sampled_from([b"&x ", b"*x", b"<<: *x\n", b"{", b"[",
                                                  b"\t", b"!!str ", b"\xef\xbb\xbf", b"- "]))
        elif op == "delete":
            del text[pos:pos + draw(st.integers(1, 20))]
        else:
            del text[pos:]
    return text.decode("utf-8", errors="replace")


@fuzz_settings(60)
@given(corpus_mutation())
def test_corpus_mutations(text: str) -> None:
    check(text)


@fuzz_settings(30)
@given(st.integers(2, 12), st.integers(2, 10))
@example(10, 10)  # 10**9 nodes once expanded
def test_alias_bombs_do_not_expand(levels: int, width: int) -> None:
    with bounded_memory(32 << 20):
        check(bomb(levels, width))


@fuzz_settings(30)
@given(st.sampled_from(["[", "{a: ", "- ", "a:\n  "]), st.integers(50, 20_000))
def test_deep_nesting(opener: str, depth: int) -> None:
    check("version: '2.0'\nservices: " + opener * depth)


@fuzz_settings(20)
@given(st.sampled_from(["9", "a", " ", "\\u0041", "'"]), st.integers(1000, 200_000))
def test_long_scalars(char: str, length: int) -> None:
    check("version: '2.0'\nservices:\n  web:\n    image: " + char * length + "\n")
