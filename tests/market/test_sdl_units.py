"""Quantities: Go's size suffixes, the Console's lenient ones, CPU units, LegacyDec prices."""

from __future__ import annotations

import pytest

from p2pakash.market.sdl import Price
from p2pakash.market.sdl.units import format_dec, format_gi, parse_cpu, parse_dec, parse_size

KI, MI, GI, TI = 1024, 1024**2, 1024**3, 1024**4


@pytest.mark.parametrize(("text", "expected"), [
    ("512Mi", 512 * MI), ("1Gi", GI), ("1.5Gi", 3 * GI // 2), ("2Ti", 2 * TI),
    ("1k", 1000), ("1Ki", KI), ("1M", 10**6), ("5G", 5 * 10**9), ("1E", 10**18),
    ("1024", 1024), ("0", 0), (" 1Gi ", GI), ("1e3", 1000),
])
def test_go_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("16GB", 16 * 10**9), ("15Gb", 15 * 10**9), ("4gi", 4 * GI), ("512mi", 512 * MI),
    ("1GiB", GI), ("100gb", 100 * 10**9), ("1K", 1000), ("0.5gi", GI // 2),
    ("1.0000000001kb", 1001),  # the Console rounds up
])
def test_lenient_console_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "Gi", "5x", "1.2.3Gi", "-1Gi", "abc", "1 Gi", "1Gx",
                                  "inf", "nan", "1e400", "99999999999Ei"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_gpu_ram_takes_binary_suffixes_and_prints_whole_gi() -> None:
    assert parse_size("80Gi", memory_suffixes_only=True) == 80 * GI
    assert format_gi(80 * GI) == "80Gi"
    assert format_gi(parse_size("40GB", memory_suffixes_only=True)) == "37Gi"  # truncated
    assert format_gi(512 * MI) == "0Gi"


@pytest.mark.parametrize(("text", "expected"), [
    ("100m", 100), ("1", 1000), ("0.5", 500), ("2.25", 2250), ("1000m", 1000), ("0", 0),
    ("0.0001", 0),  # Go truncates
])
def test_cpu_units(text: str, expected: int) -> None:
    assert parse_cpu(text) == expected


@pytest.mark.parametrize("text", ["-100m", "-1", "abc", "1.5m", "m", "", "5000000"])
def test_bad_cpu_units(text: str) -> None:
    with pytest.raises(ValueError):
        parse_cpu(text)


@pytest.mark.parametrize(("text", "atto"), [
    ("1000", 1000 * 10**18), ("0.5", 5 * 10**17), ("0.000000000000000001", 1),
    ("-2", -2 * 10**18), ("007", 7 * 10**18),
])
def test_decimal_amounts(text: str, atto: int) -> None:
    assert parse_dec(text) == atto


@pytest.mark.parametrize("text", ["", ".5", "5.", "1e3", "0.0000000000000000001", "abc",
                                  "+1", "1,5"])
def test_bad_decimal_amounts(text: str) -> None:
    with pytest.raises(ValueError):
        parse_dec(text)


def test_price_is_exact_and_prints_like_akash() -> None:
    price = Price.parse("uakt", "1000")
    assert price.amount == "1000.000000000000000000"
    assert price.whole == 1000
    assert price.to_json() == {"denom": "uakt", "amount": "1000.000000000000000000"}
    half = Price.parse("uact", "0.5")
    assert half.amount_atto == 5 * 10**17 and half.whole == 0
    assert half.amount == "0.500000000000000000"
    assert format_dec(-1) == "-0.000000000000000001"
