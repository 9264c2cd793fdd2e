"""akash-script: Akash's stdin JSON and environment, output parsing, timeouts, limits."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from p2pakash.errors import ConfigError
from p2pakash.plugins import types as t
from p2pakash.plugins.manager import PluginManager
from p2pakash.plugins.pricing_script import ScriptPricing, parse_output
from tests.plugins.samples import OWNER, allocated, config, context, cpu_group, gpu_group

# The stdin example of reference/akash.md §2 (denomination uakt instead of uact).
AKASH_EXAMPLE = (
    '{"resources":[{"memory":536870912,"cpu":1000,'
    '"gpu":{"units":1,"attributes":{"vendor":{"nvidia":{"model":"a100","ram":"80Gi",'
    '"interface":"sxm"}}}},'
    '"storage":[{"class":"ephemeral","size":1073741824},{"class":"beta3","size":10737418240}],'
    '"count":1,"endpoint_quantity":1,"ip_lease_quantity":0}],'
    '"price":{"denom":"uakt","amount":"10000.000000000000000000"},"price_precision":6}\n')

# An Akash-style bid price script in the manner of helm-charts' price_script_generic.sh:
# USD targets per month, GPU mappings with fallbacks, ÷ 429,909 blocks, AKT price, refuses
# a rate above the tenant's maximum. Plain sh + python3 (no jq); used unchanged.
GENERIC_SCRIPT = r"""#!/bin/sh
set -eu
AKT_USD="${AKT_USD:-2.5}"
export AKT_USD
python3 -c '
import json, os, sys
from decimal import Decimal as D
d = json.load(sys.stdin)
cpu, ram, endpoint, ip = D("1.60"), D("0.80"), D("0.05"), D("5")
storage = {"ephemeral": D("0.02"), "beta1": D("0.01"), "beta2": D("0.03"), "beta3": D("0.04")}
mappings = os.environ.get("PRICE_TARGET_GPU_MAPPINGS",
                          "a100=950,a100.80Gi=1000,a100.80Gi.sxm=1200,t4=100")
gpu = {k: D(v) for k, v in (kv.split("=") for kv in mappings.split(","))}
gib = D(1024 ** 3)
total = D(0)
for r in d["resources"]:
    n = r["count"]
    total += cpu * r["cpu"] / 1000 * n + ram * r["memory"] / gib * n
    total += sum(storage[s["class"]] * s["size"] / gib for s in r["storage"]) * n
    total += endpoint * r["endpoint_quantity"] + ip * r["ip_lease_quantity"]
    units = r["gpu"]["units"]
    if units:
        a = r["gpu"]["attributes"]["vendor"]["nvidia"]
        keys = [".".join(filter(None, (a["model"], a.get("ram"), a.get("interface")))),
                ".".join(filter(None, (a["model"], a.get("ram")))), a["model"]]
        target = next((gpu[k] for k in keys if k in gpu), max(gpu.values()))
        total += target * units * n
usd_per_block = total / 429909
denom = os.environ["AKASH_DENOM"]
rate = usd_per_block * 1000000
if denom == "uakt":
    rate = rate / D(os.environ["AKT_USD"])
if rate > D(d["price"]["amount"]):
    print("requested rate is too low. min expected %s" % rate, file=sys.stderr)
    sys.exit(1)
print(("%.*f" % (d.get("price_precision", 6), rate)))
'
"""


def write_script(tmp_path: Path, body: str, name: str = "price.sh") -> Path:
    path = tmp_path / name
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def sh(tmp_path: Path, body: str) -> ScriptPricing:
    return ScriptPricing(write_script(tmp_path, "#!/bin/sh\n" + body), timeout=5)


def test_stdin_and_environment_are_akashs(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    pricing = sh(tmp_path, f'cat > {seen}.json\nenv > {seen}.env\necho 42\n')
    group = gpu_group()
    answer = pricing.p2pakash_bid_price(group=group, resources=allocated(group),
                                        context=context())
    assert answer == t.PriceQuote(price_per_block=42, denom="uakt")
    assert (tmp_path / "seen.json").read_text() == AKASH_EXAMPLE
    env = dict(line.split("=", 1) for line in (tmp_path / "seen.env").read_text().splitlines()
               if "=" in line)
    assert env["AKASH_OWNER"] == OWNER
    assert env["AKASH_DENOM"] == "uakt"
    assert env["PATH"] == os.environ["PATH"]  # inherited


def test_cpu_group_input_counts_and_random_port_endpoint(tmp_path: Path) -> None:
    seen = tmp_path / "in.json"
    pricing = sh(tmp_path, f"cat > {seen}\necho 1\n")
    group = cpu_group(max_price=1000)
    pricing.p2pakash_bid_price(group=group, resources=allocated(group), context=context())
    doc = json.loads(seen.read_text())
    assert doc == {"resources": [{"memory": 4 * 1024**3, "cpu": 2000,
                                  "gpu": {"units": 0, "attributes": {}},
                                  "storage": [{"class": "ephemeral", "size": 20 * 1024**3}],
                                  "count": 3, "endpoint_quantity": 1,
                                  "ip_lease_quantity": 0}],
                   "price": {"denom": "uakt", "amount": "3000.000000000000000000"},
                   "price_precision": 6}


def test_generic_style_script_unchanged_price_lands_in_quote(tmp_path: Path) -> None:
    path = write_script(tmp_path, GENERIC_SCRIPT)
    cfg = config(pricing="akash-script", **{"akash-script": {"path": str(path)}})
    manager = PluginManager.load(cfg)
    group = gpu_group()
    answer = manager.bid_price(group, allocated(group), context())
    usd = (Decimal("1.60") + Decimal("0.80") * Decimal("0.5") + Decimal("0.02")
           + Decimal("0.04") * 10 + Decimal("0.05") + Decimal("1200"))
    expected = usd / 429909 / Decimal("2.5") * 1000000
    assert 1118 < expected < 1120
    assert answer == t.PriceQuote(price_per_block=int(expected) + 1, denom="uakt")


def test_generic_script_refusal_declines_with_stderr(tmp_path: Path) -> None:
    path = write_script(tmp_path, GENERIC_SCRIPT)
    pricing = ScriptPricing(path, env={**os.environ, "AKT_USD": "0.0001"})
    group = gpu_group()
    answer = pricing.p2pakash_bid_price(group=group, resources=allocated(group),
                                        context=context())
    assert isinstance(answer, t.Decline)
    assert answer.reason_code == t.SCRIPT_FAILED
    assert answer.reason.startswith("exit status 1: script failure requested rate is too low")


@pytest.mark.parametrize(("stdout", "code", "text"), [
    ("", t.NO_AMOUNT, "bid script must return amount"),
    ("  \n", t.NO_AMOUNT, "bid script must return amount"),
    ("garbage", t.INVALID_QUANTITY, "a bid quantity is invalid"),
    ("1.2.3", t.INVALID_QUANTITY, "a bid quantity is invalid"),
    ("0.0000000000000000001", t.INVALID_QUANTITY, "exceeds max precision"),
    ("-5", t.INVALID_QUANTITY, "a bid quantity is invalid"),
    ("0", t.ZERO_BID, "a bid of zero was produced"),
    ("0.000000", t.ZERO_BID, "a bid of zero was produced"),
])
def test_bad_output_declines_with_akash_texts(stdout: str, code: str, text: str) -> None:
    answer = parse_output(stdout.encode(), "uakt")
    assert isinstance(answer, t.Decline)
    assert answer.reason_code == code
    assert text in answer.reason


@pytest.mark.parametrize(("stdout", "price"), [
    ("7", 7), (" 7\n", 7), ("12.5", 13), ("0.000001", 1), ("99.000000000000000001", 100)])
def test_output_rounds_up_to_whole_uakt(stdout: str, price: int) -> None:
    assert parse_output(stdout.encode(), "uakt") == t.PriceQuote(price_per_block=price)


@pytest.mark.parametrize("body", ["echo garbage", "echo -- -3", "echo 0", "true"])
def test_bad_scripts_decline_through_the_process(tmp_path: Path, body: str) -> None:
    group = cpu_group()
    answer = sh(tmp_path, body + "\n").p2pakash_bid_price(
        group=group, resources=allocated(group), context=context())
    assert isinstance(answer, t.Decline)


def test_hanging_script_times_out_and_its_children_die(tmp_path: Path) -> None:
    marker = tmp_path / "child-alive"
    script = write_script(tmp_path, f"#!/bin/sh\n(sleep 3; touch {marker}) &\nsleep 30\n")
    pricing = ScriptPricing(script, timeout=0.3)
    group = cpu_group()
    start = time.monotonic()
    answer = pricing.p2pakash_bid_price(group=group, resources=allocated(group),
                                        context=context())
    assert time.monotonic() - start < 2.5
    assert isinstance(answer, t.Decline)
    assert answer.reason_code == t.SCRIPT_TIMEOUT
    assert "context deadline exceeded" in answer.reason


def test_nonzero_exit_declines_with_last_stderr_line(tmp_path: Path) -> None:
    group = cpu_group()
    answer = sh(tmp_path, "echo first >&2\necho 'no capacity today' >&2\necho 5\nexit 3\n"
                ).p2pakash_bid_price(group=group, resources=allocated(group), context=context())
    assert answer == t.Decline(reason_code=t.SCRIPT_FAILED,
                               reason="exit status 3: script failure no capacity today")


def test_process_limit_bounds_concurrent_scripts(tmp_path: Path) -> None:
    running, log = tmp_path / "running", tmp_path / "log"
    running.mkdir()
    script = write_script(tmp_path, f"#!/bin/sh\ntouch {running}/$$\nls {running} | wc -l >> {log}"
                                    f"\nsleep 0.2\nrm {running}/$$\necho 3\n")
    pricing = ScriptPricing(script, timeout=5, process_limit=2)
    group = cpu_group()
    answers: list[object] = []

    def bid() -> None:
        answers.append(pricing.p2pakash_bid_price(group=group, resources=allocated(group),
                                                  context=context()))

    threads = [threading.Thread(target=bid) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert answers == [t.PriceQuote(price_per_block=3)] * 6
    counts = [int(line) for line in log.read_text().split()]
    assert len(counts) == 6 and max(counts) <= 2


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    plain = tmp_path / "plain.sh"
    plain.write_text("echo 1\n")
    with pytest.raises(ConfigError, match=r"\[provider.akash-script\]: path: .* not an exec"):
        PluginManager.load(config(pricing="akash-script",
                                  **{"akash-script": {"path": str(plain)}}))
    with pytest.raises(ConfigError, match="path: the bid price script is not set"):
        PluginManager.load(config(pricing="akash-script"))
    good = write_script(tmp_path, "#!/bin/sh\necho 1\n")
    with pytest.raises(ConfigError, match="akash-script\\]: timeout: must be positive"):
        PluginManager.load(config(pricing="akash-script",
                                  **{"akash-script": {"path": str(good), "timeout": 0}}))
    with pytest.raises(ConfigError, match="colour: unknown key"):
        PluginManager.load(config(pricing="akash-script",
                                  **{"akash-script": {"path": str(good), "colour": 1}}))


def test_quote_above_group_maximum_is_declined_by_the_manager(tmp_path: Path) -> None:
    path = write_script(tmp_path, "#!/bin/sh\necho 3000.5\n")
    manager = PluginManager.load(config(pricing="akash-script",
                                        **{"akash-script": {"path": str(path)}}))
    group = cpu_group(max_price=1000)  # 3 replicas: the group pays at most 3000
    answer = manager.bid_price(group, allocated(group), context())
    assert isinstance(answer, t.Decline)
    assert answer.reason_code == t.BELOW_COST
    assert "price too high, not bidding: 3001uakt" in answer.reason
