"""Fuzz the small text parsers: Akash price-script output, quantities, peer addresses, bech32.

Properties (each parser's documented error type):
* ``pricing_script.parse_output(stdout)`` never raises: a PriceQuote only for an ASCII
  decimal number (Go's parser refuses other digits), else a Decline with a reason.
* ``units.parse_size/parse_cpu/parse_dec/parse_uint`` return an int or raise ValueError.
* ``PeerAddr.parse``/``split_host_port`` return a value or raise ValueError; the port is an
  ASCII number in 1..65535. ``transport.parse_addr`` raises OSError(EINVAL) instead.
* ``crypto.address_bytes`` gives 20 bytes or raises ValueError; ``crypto.address`` of those
  bytes' key round-trips through it.
"""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from p2pakash import crypto
from p2pakash.gossip.addr import PeerAddr, split_host_port
from p2pakash.gossip.transport import parse_addr
from p2pakash.market.sdl import units
from p2pakash.plugins.pricing_script import parse_output
from p2pakash.plugins.types import Decline, PriceQuote
from tests.fuzz.support import fuzz_settings, only_ours

GO_SPACE = "[\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*"
ASCII_DEC = re.compile(GO_SPACE + r"-?[0-9]+(\.[0-9]+)?" + GO_SPACE)
NUMERIC = st.sampled_from(["0", "1", "-1", "0.5", "1e3", "1E-3", ".5", "5.", "+1", "٣", "²",
                           "１", "9" * 30, "9" * 5000, "1" + "0" * 80, "0x10", "inf", "nan",
                           "1_000", " 1 ", "\t2\n", "Gi", "Mi", "k", "m", "E", "Ei", "b", "ib"])
texts = st.lists(NUMERIC | st.text(max_size=6), max_size=4).map("".join)


@fuzz_settings(400)
@given(texts.map(str.encode) | st.binary(max_size=40))
@example("٣".encode())  # found by this test: Unicode digits gave a quote (Go refuses them)
@example(b"\x1c1")  # found by `make fuzz`: str.strip() trims \x1c, Go's TrimSpace does not
def test_price_script_output(stdout: bytes) -> None:
    answer = parse_output(stdout, "uakt")
    if isinstance(answer, PriceQuote):
        assert ASCII_DEC.fullmatch(stdout.decode()), answer
        assert answer.price_per_block > 0
    else:
        assert isinstance(answer, Decline) and answer.reason


@fuzz_settings(400)
@given(texts)
@example("٣Gi")  # found by this test: accepted as 3 GiB
@example("0" + "9" * 50_000)  # found by this test: quadratic regex backtracking (a hang)
def test_quantities(text: str) -> None:
    for parse in (units.parse_size, units.parse_cpu, units.parse_dec, units.parse_uint):
        value = only_ours(parse, text, allowed=(ValueError,))
        if value is not None:
            assert isinstance(value, int)
            assert text.strip().isascii(), f"{parse.__name__} accepted {text!r}"
    size = only_ours(units.parse_size, text, memory_suffixes_only=True, allowed=(ValueError,))
    assert size is None or 0 <= size <= units.MAX_UINT64


HOSTS = st.sampled_from(["127.0.0.1", "[::1]", "::1", "[", "]", "example.org", "", "[::]"])
PORTS = NUMERIC | st.sampled_from(["0", "65535", "65536", "80"]) | st.text(max_size=4)
NODE = st.sampled_from(["a" * 40, "A" * 40, "a" * 39, ""]) | st.text(max_size=5)


@fuzz_settings(400)
@given(NODE, st.sampled_from(["@", "", "@@"]), HOSTS | st.text(max_size=6),
       st.sampled_from([":", "", "::"]), PORTS)
@example("a" * 40, "@", "h", ":", "٣")  # found by this test: accepted as port 3
def test_peer_addresses(node: str, at: str, host: str, colon: str, port: str) -> None:
    text = f"{node}{at}{host}{colon}{port}"
    addr = only_ours(PeerAddr.parse, text, allowed=(ValueError,))
    if addr is not None:
        assert 1 <= addr.port <= 65535 and PeerAddr.parse(str(addr)) == addr
        assert port.strip().isascii()
    hostport = only_ours(split_host_port, f"{host}{colon}{port}", allowed=(ValueError,))
    assert hostport is None or 1 <= hostport[1] <= 65535
    only_ours(parse_addr, f"{host}{colon}{port}", allowed=(OSError,))


@fuzz_settings(300)
@given(st.text(max_size=100) | st.sampled_from(["akash1", "akash1" + "q" * 38, "AKASH1QQ"])
       | st.binary(min_size=32, max_size=32).map(crypto.address))
def test_bech32_addresses(text: str) -> None:
    raw = only_ours(crypto.address_bytes, text, allowed=(ValueError,))
    assert raw is None or len(raw) == 20
    assert crypto.is_node_id(text) in (True, False)
