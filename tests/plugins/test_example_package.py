"""The example plugin package: pip builds and installs it, the entry point loads, it wins.

pip installs a copy of ``examples/p2pakash-price-example`` into a temporary target directory
that is put on ``sys.path`` (the same ``.dist-info/entry_points.txt`` discovery as an install
into the virtualenv, without changing the shared environment or the source tree). pip first
tries without build isolation; if the environment lacks ``wheel`` it builds in isolation;
if neither works (offline, no build backend) the test skips with pip's reason.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from p2pakash import crypto
from p2pakash.errors import ConfigError
from p2pakash.market.orders import (
    BidBody,
    DeploymentID,
    OrderBody,
    OrderGroup,
    sign_bid,
    sign_order,
)
from p2pakash.plugins import types as t
from p2pakash.plugins.manager import PluginManager
from tests.plugins.samples import allocated, config, context, cpu_group, gpu_group

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "p2pakash-price-example"
RATES = {"cpu": 10, "memory": 5, "endpoint": 1,
         "storage": {"ephemeral": 0.5, "beta3": 1}, "gpu": {"a100": 900}}


def pip_install(source: Path, target: Path) -> str:
    """Install ``source`` into ``target``; '' on success, else pip's last error line."""
    base = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input",
            "--disable-pip-version-check", "--target", str(target), str(source)]
    reason = ""
    for extra in (["--no-build-isolation"], []):
        proc = subprocess.run(base + extra, capture_output=True, text=True, timeout=240,
                              check=False)
        if proc.returncode == 0:
            return ""
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()]
        reason = (errors or lines or ["pip failed"])[-1]
    return reason


@contextmanager
def example_installed(root: Path) -> Iterator[Path]:
    """The example package pip-installed under ``root`` and importable while inside; skips
    the calling test (with pip's reason) when pip cannot build it here."""
    source, target = root / "src", root / "site"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    reason = pip_install(source, target)
    if reason:
        pytest.skip(f"pip cannot build the example package here: {reason}")
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        for name in [m for m in sys.modules if m.startswith("p2pakash_price_example")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with example_installed(tmp_path_factory.mktemp("example")) as target:
        yield target


def test_pip_recorded_the_entry_point(installed: Path) -> None:
    [info] = installed.glob("p2pakash_price_example-*.dist-info")
    text = (info / "entry_points.txt").read_text()
    assert "[p2pakash]" in text and "discount = p2pakash_price_example:DiscountPricing" in text


def test_entry_point_loads_and_prices_below_linear(installed: Path) -> None:
    discount = PluginManager.load(config(pricing="discount", entry_points=True, linear=RATES,
                                         discount={"percent": 10}))
    linear = PluginManager.load(config(pricing="linear", linear=RATES))
    assert type(discount.pricing).__name__ == "DiscountPricing"
    assert type(discount.pricing).__module__ == "p2pakash_price_example"
    for group in (cpu_group(), gpu_group()):
        ours = discount.bid_price(group, allocated(group), context())
        theirs = linear.bid_price(group, allocated(group), context())
        assert isinstance(ours, t.PriceQuote) and isinstance(theirs, t.PriceQuote)
        assert ours.price_per_block < theirs.price_per_block
    group = cpu_group()
    assert discount.bid_price(group, allocated(group), context()) == t.PriceQuote(
        price_per_block=138)  # ceil(153 × 0.9)
    too_cheap = cpu_group(max_price=10)  # linear declines: so does the discount
    answer = discount.bid_price(too_cheap, allocated(too_cheap), context())
    assert isinstance(answer, t.Decline) and answer.reason_code == t.BELOW_COST


def test_example_wins_the_auction_against_linear(installed: Path) -> None:
    tenant = crypto.PrivateKey.from_seed(b"t" * 32)
    group = cpu_group()
    order = sign_order(tenant, "chain", OrderBody(
        deployment=DeploymentID(owner=tenant.address, dseq=1), oseq=1,
        groups=(OrderGroup.from_spec(group),), manifest_hash=bytes(32), deposit=5_000_000,
        expiry_ms=60_000))
    bids = []
    for seed, pricing in ((b"a", "linear"), (b"b", "discount")):
        key = crypto.PrivateKey.from_seed(seed * 32)
        manager = PluginManager.load(config(pricing=pricing, entry_points=True, linear=RATES))
        quote = manager.bid_price(group, allocated(group), context())
        assert isinstance(quote, t.PriceQuote)
        bids.append(sign_bid(key, "chain", BidBody(
            order=order.order_id(1), order_digest=order.digest, provider=key.address,
            price=quote.price_per_block, resources=(), expiry_ms=60_000)))
    tenant_side = PluginManager.load(config(entry_points=True))
    assert tenant_side.select_bid(order, bids) is bids[1]


def test_example_settings_are_checked(installed: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[provider\]: discount: percent: expected a number "
                                          "between 0 and 100, got 150"):
        PluginManager.load(config(pricing="discount", entry_points=True,
                                  discount={"percent": 150}))
