"""Quantities in an SDL: byte sizes, CPU units, GPU counts and decimal prices.

Rules:
* Sizes follow Go's SDL first (``go/sdl/units.go``): an optional case-sensitive suffix
  ``k Ki M Mi G Gi T Ti P Pi E Ei`` after a Go float, the product truncated to an
  integer; plain numbers are bytes. When Go refuses a size, the Console's lenient rule
  applies (``ts/src/sdl/sizes.ts``): case-insensitive prefix ``k m g t p e`` followed by
  nothing, ``b`` (1000-based), ``i`` or ``ib`` (1024-based), value rounded up. So
  ``16GB``, ``15Gb`` and ``4gi`` are accepted; ``5x`` is not.
* GPU RAM accepts only the 1024-based suffixes (``Ki``..``Ei``) in Go; the lenient rule is
  the same as for sizes.
* CPU: ``"100m"`` is 100 millicpu (an unsigned integer before ``m``); otherwise a Go float
  times 1000, truncated. Negative values are refused.
* Prices are cosmos ``LegacyDec`` values: at most 18 decimals, kept exactly as an integer
  count of 10^-18 units (``atto``); their text form always shows 18 decimals.
Every failure raises ValueError with a short reason; callers add the SDL path.
"""

from __future__ import annotations

import math
import re

KI = 1024
UNIT_SUFFIXES: dict[str, int] = {
    "k": 1000, "Ki": KI,
    "M": 1000**2, "Mi": KI**2,
    "G": 1000**3, "Gi": KI**3,
    "T": 1000**4, "Ti": KI**4,
    "P": 1000**5, "Pi": KI**5,
    "E": 1000**6, "Ei": KI**6,
}
MEMORY_SUFFIXES: dict[str, int] = {k: v for k, v in UNIT_SUFFIXES.items() if k.endswith("i")}

MAX_UINT64 = 2**64 - 1
MAX_UINT32 = 2**32 - 1
DEC_PRECISION = 18
DEC_ONE: int = 10**DEC_PRECISION

# Go's strconv.ParseFloat accepts decimal and hex floats, inf and nan; we accept the
# finite decimal forms (hex floats and underscores are not used in SDLs).
# re.ASCII: Go's parsers take only ASCII digits (Python's \d and float() take any Unicode
# digit). ``\d+(?:\.\d*)?`` rather than ``\d+\.?\d*``: the latter backtracks quadratically
# on a long run of digits that fails to match (8600 digits took 0.4 s).
_GO_FLOAT = re.compile(r"[+-]?(\d+(?:\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)
_LENIENT_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([kmgtpe])(i|b|ib)?", re.IGNORECASE | re.ASCII)
_PLAIN_DECIMAL = re.compile(r"(\d+(?:\.\d*)?|\.\d+)", re.ASCII)
_DEC = re.compile(r"(-?)(\d+)(?:\.(\d+))?", re.ASCII)


def go_float(text: str) -> float:
    """strconv.ParseFloat(text, 64) for the finite decimal forms."""
    if not _GO_FLOAT.fullmatch(text):
        raise ValueError(f"cannot parse {text!r} as a number")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is out of range")
    return value


def _go_size(text: str, suffixes: dict[str, int]) -> int:
    for suffix, unit in suffixes.items():
        if text.endswith(suffix):
            value = go_float(text[: -len(suffix)]) * unit
            break
    else:
        value = go_float(text)
    if value < 0:
        raise ValueError("invalid: negative value not allowed")
    if value >= 2.0**64:
        raise ValueError(f"{text!r} is out of range")
    return int(value)


def _ceil_decimal(digits: str, multiplier: int) -> int:
    whole, _, frac = digits.partition(".")
    numerator = int((whole + frac) or "0") * multiplier
    denominator: int = 10 ** len(frac)
    return -(-numerator // denominator)


def _lenient_size(text: str) -> int:
    match = _LENIENT_SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"cannot parse size {text!r}")
    number, prefix, unit = match.groups()
    power = "kmgtpe".index(prefix.lower()) + 1
    base = 1000 if unit is None or unit.lower() == "b" else 1024
    return _ceil_decimal(number, base**power)


def parse_size(text: str, *, memory_suffixes_only: bool = False) -> int:
    """Bytes for a memory/storage size (or GPU RAM with ``memory_suffixes_only``)."""
    text = text.strip()
    suffixes = MEMORY_SUFFIXES if memory_suffixes_only else UNIT_SUFFIXES
    try:
        value = _go_size(text, suffixes)
    except ValueError as go_error:
        if text.startswith("-"):
            raise ValueError("invalid: negative value not allowed") from None
        try:
            value = _lenient_size(text)
        except ValueError:
            raise go_error from None
    if value > MAX_UINT64:
        raise ValueError(f"{text!r} is out of range")
    return value


def format_gi(size: int) -> str:
    """memoryQuantity.StringWithSuffix("Gi"): whole GiB, truncated, plus ``Gi``."""
    return f"{size // KI**3}Gi"


def parse_cpu(text: str) -> int:
    """Millicpu for a CPU ``units`` value."""
    text = text.strip()
    if text.endswith("m"):
        digits = text[:-1]
        if not digits.isdigit() or not digits.isascii():
            raise ValueError(f'strconv.ParseUint: parsing "{digits}": invalid syntax')
        value = int(digits)
        if value > MAX_UINT32:
            raise ValueError(f'strconv.ParseUint: parsing "{digits}": value out of range')
        return value
    millis = go_float(text) * 1000
    if millis < 0:
        raise ValueError("invalid: negative value not allowed")
    if millis > MAX_UINT32:
        raise ValueError(f"cpu units {text!r} out of range")
    return int(millis)


def parse_uint(text: str, *, bits: int = 64) -> int:
    """strconv.ParseUint(text, 10, bits)."""
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        raise ValueError(f'strconv.ParseUint: parsing "{text}": invalid syntax')
    value = int(text)
    if value >= 2**bits:
        raise ValueError(f'strconv.ParseUint: parsing "{text}": value out of range')
    return value


def parse_dec(text: str) -> int:
    """cosmos LegacyNewDecFromStr as an exact count of 10^-18 units."""
    if text == "":
        raise ValueError("decimal string cannot be empty")
    match = _DEC.fullmatch(text)
    if match is None:
        raise ValueError(f"failed to set decimal string: {text!r}")
    sign, whole, frac = str(match[1]), str(match[2]), str(match[3] or "")
    if len(frac) > DEC_PRECISION:
        raise ValueError(
            f"value '{text}' exceeds max precision by {len(frac) - DEC_PRECISION} decimal "
            f"places: max precision {DEC_PRECISION}"
        )
    if len(whole.lstrip("0")) > 78:  # over 2**256 anyway; int() of 4301 digits would raise
        raise ValueError(f"decimal {text[:40]!r}... out of range")
    atto = int(whole) * DEC_ONE + int(frac.ljust(DEC_PRECISION, "0") or "0")
    if atto.bit_length() > 256:
        raise ValueError(f"decimal {text!r} out of range")
    return -atto if sign else atto


def format_dec(atto: int) -> str:
    """LegacyDec.String(): the value with exactly 18 decimals."""
    sign = "-" if atto < 0 else ""
    whole, frac = divmod(abs(atto), DEC_ONE)
    return f"{sign}{whole}.{frac:018d}"
