"""``akash-script`` pricing: run an unmodified Akash bid price script.

Rules and invariants (Akash ``bidengine/shellscript.go``):
* stdin is one JSON object, encoded as Go's ``json.Encoder`` does (compact, key order of
  the Go structs, a final newline): per allocated unit ``memory`` (bytes), ``cpu``
  (millicpu), ``gpu`` {``units``, ``attributes`` {``vendor`` {<v>: {``model``, [``ram``],
  [``interface``]}}}} (``vendor`` omitted when there are no GPU attributes), ``storage``
  [{``class`` (the volume's class, else ``ephemeral``), ``size``}], ``count``,
  ``endpoint_quantity`` (all endpoints), ``ip_lease_quantity``; then ``price`` (the group's
  maximum per block, {``denom``, ``amount`` with 18 decimals}) and ``price_precision`` 6.
* Environment: inherited + ``AKASH_OWNER`` (the tenant) + ``AKASH_DENOM`` (group denom).
* At most ``process_limit`` scripts run at once (a semaphore: the hook runs in threads);
  the timeout starts once the script is started; on timeout its whole process group is
  killed. A non-zero exit declines with the last line of stderr.
* stdout, trimmed, is one decimal number: the price per block in AKASH_DENOM, rounded up to
  an integer. Empty, unparsable, negative and zero outputs decline with Akash's texts.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from p2pakash.errors import ConfigError
from p2pakash.market.sdl.groups import GroupSpec, ResourceUnit
from p2pakash.market.sdl.resources import GPU, StorageVolume
from p2pakash.market.sdl.units import parse_dec
from p2pakash.plugins.hookspecs import hookimpl
from p2pakash.plugins.types import (
    INVALID_QUANTITY,
    NO_AMOUNT,
    SCRIPT_FAILED,
    SCRIPT_TIMEOUT,
    ZERO_BID,
    AllocatedResources,
    Decline,
    PluginConfig,
    PriceQuote,
    ProviderContext,
    ceil_atto,
    group_max_price,
    leased_ips,
)

log = logging.getLogger(__name__)

NAME = "akash-script"
PRICE_PRECISION = 6
DEFAULT_TIMEOUT = 10.0
DEFAULT_PROCESS_LIMIT = 32
ERR_INVALID = "a bid quantity is invalid"
ERR_ZERO = "a bid of zero was produced"
# Go's strings.TrimSpace (unicode.IsSpace); Python's str.strip() also strips \x1c-\x1f
GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006" \
           "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def gpu_json(gpu: GPU) -> dict[str, Any]:
    """``parseGPU``: attribute keys ``vendor/<v>/model/<m>[/ram/<r>][/interface/<i>]``."""
    vendors: dict[str, dict[str, str]] = {}
    for attribute in gpu.attributes:
        tokens = attribute.key.split("/")
        if tokens[0] != "vendor" or len(tokens) < 4:
            continue
        entry = {"model": tokens[3]}
        rest = tokens[4:]
        found = dict(zip(rest[0::2], rest[1::2], strict=False))
        for key in ("ram", "interface"):
            if key in found:
                entry[key] = found[key]
        vendors[tokens[1]] = entry
    attributes: dict[str, Any] = {"vendor": vendors} if vendors else {}
    return {"units": gpu.units, "attributes": attributes}


def storage_json(volumes: tuple[StorageVolume, ...]) -> list[dict[str, Any]]:
    out = []
    for volume in volumes:
        cls = next((a.value for a in volume.attributes if a.key == "class" and a.value),
                   "ephemeral")
        out.append({"class": cls, "size": volume.size})
    return out


def unit_json(unit: ResourceUnit) -> dict[str, Any]:
    res = unit.resources
    return {"memory": res.memory_bytes, "cpu": res.cpu_millis, "gpu": gpu_json(res.gpu),
            "storage": storage_json(res.storage), "count": unit.count,
            "endpoint_quantity": len(res.endpoints), "ip_lease_quantity": leased_ips(unit)}


def script_input(group: GroupSpec, resources: AllocatedResources) -> dict[str, Any]:
    """The object Akash writes to the script's stdin (allocated units, else the group's)."""
    units = resources.units or group.resources
    return {"resources": [unit_json(u) for u in units],
            "price": group_max_price(group).to_json(), "price_precision": PRICE_PRECISION}


def encode_input(data: dict[str, Any]) -> bytes:
    """Go's ``json.NewEncoder(buf).Encode``: compact, HTML characters escaped, newline."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return (text + "\n").encode()


def parse_output(stdout: bytes, denom: str) -> PriceQuote | Decline:
    """One decimal number per Akash's rules -> a quote rounded up to an integer."""
    text = stdout.decode(errors="replace").strip(GO_SPACE)
    if text == "":
        return Decline(reason_code=NO_AMOUNT,
                       reason=f"bid script must return amount:EOF{ERR_INVALID}")
    try:
        atto = parse_dec(text)
    except ValueError as exc:
        return Decline(reason_code=INVALID_QUANTITY, reason=f"{exc}{ERR_INVALID}")
    if atto == 0:
        return Decline(reason_code=ZERO_BID, reason=ERR_ZERO)
    if atto < 0:
        return Decline(reason_code=INVALID_QUANTITY, reason=f"{ERR_INVALID}: {text!r}")
    return PriceQuote(price_per_block=ceil_atto(atto), denom=denom)


def _last_line(data: bytes) -> str:
    lines = [line.strip() for line in data.decode(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    return lines[-1][:300] if lines else ""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


class ScriptPricing:
    """The ``akash-script`` plugin: ``[provider.akash-script]`` path, timeout, process_limit."""

    def __init__(self, path: str | Path | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 process_limit: int = DEFAULT_PROCESS_LIMIT,
                 env: Mapping[str, str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.timeout = timeout
        self.process_limit = process_limit
        self.env = env
        self._slots = threading.BoundedSemaphore(process_limit)
        if self.path is not None:
            self._check(f"[provider.{NAME}]")

    def _check(self, where: str) -> None:
        if self.path is None:
            raise ConfigError(f"{where}: path: the bid price script is not set")
        if not self.path.is_file() or not os.access(self.path, os.X_OK):
            raise ConfigError(f"{where}: path: {self.path} is not an executable file")
        if not self.timeout > 0:
            raise ConfigError(f"{where}: timeout: must be positive, got {self.timeout!r}")
        if self.process_limit < 1:
            raise ConfigError(f"{where}: process_limit: must be at least 1, "
                              f"got {self.process_limit!r}")

    @hookimpl
    def p2pakash_configure(self, config: PluginConfig) -> None:
        table = config.section(NAME)
        where = f"{config.source[:-1]}.{NAME}]" if config.source.endswith("]") else NAME
        for key in table:
            if key not in ("path", "timeout", "process_limit"):
                raise ConfigError(f"{where}: {key}: unknown key (expected path, timeout, "
                                  "process_limit)")
        path, timeout = table.get("path", self.path), table.get("timeout", self.timeout)
        limit = table.get("process_limit", self.process_limit)
        if path is not None and not isinstance(path, str | Path):
            raise ConfigError(f"{where}: path: expected a file path, got {path!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ConfigError(f"{where}: timeout: expected seconds, got {timeout!r}")
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise ConfigError(f"{where}: process_limit: expected an integer, got {limit!r}")
        self.path, self.timeout = (Path(path) if path is not None else None), float(timeout)
        if limit != self.process_limit:
            self.process_limit, self._slots = limit, threading.BoundedSemaphore(limit)
        self._check(where)

    @hookimpl
    def p2pakash_bid_price(self, group: GroupSpec, resources: AllocatedResources,
                           context: ProviderContext) -> PriceQuote | Decline:
        denom = group_max_price(group).denom
        stdin = encode_input(script_input(group, resources))
        env = dict(os.environ if self.env is None else self.env)
        env["AKASH_OWNER"], env["AKASH_DENOM"] = context.owner, denom
        with self._slots:
            return self._run(stdin, env, denom)

    def _run(self, stdin: bytes, env: dict[str, str], denom: str) -> PriceQuote | Decline:
        if self.path is None:
            raise ConfigError(f"[provider.{NAME}]: path: the bid price script is not set")
        try:
            proc = subprocess.Popen([str(self.path)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                    start_new_session=True)
        except OSError as exc:
            return Decline(reason_code=SCRIPT_FAILED, reason=f"bid price script {self.path}: "
                                                             f"cannot start: {exc}")
        try:
            out, err = proc.communicate(stdin, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return Decline(reason_code=SCRIPT_TIMEOUT,
                           reason=f"context deadline exceeded: bid price script {self.path} "
                                  f"ran over {self.timeout:g}s")
        finally:
            if proc.poll() is None:  # an exception other than the timeout
                _kill_group(proc)
                proc.wait()
        if proc.returncode != 0:
            status = (f"exit status {proc.returncode}" if proc.returncode > 0
                      else f"signal: {-proc.returncode}")
            return Decline(reason_code=SCRIPT_FAILED,
                           reason=f"{status}: script failure {_last_line(err)}".rstrip())
        return parse_output(out, denom)
