"""A small synchronous client of the node's HTTP API (stdlib urllib), for the CLI.

Rules and invariants:
* A node that cannot be reached raises ``NodeUnreachable`` ("cannot reach node at URL:
  why"); an answer with an error status raises ``ApiError`` carrying the status and the
  JSON body, its message the body's ``error``. Both are one line.
* Every request has a timeout; ``wait_for_tx`` is bounded in time (and so in polls).
* Nothing here signs or holds keys: callers build and sign txs, the client carries bytes.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p2pakash.errors import P2PAkashError
from p2pakash.gossip.addr import join_host_port, split_host_port

DEFAULT_URL = "http://127.0.0.1:26680"
Json = dict[str, Any]


class NodeUnreachable(P2PAkashError):
    """No HTTP answer from the node (refused, timed out, bad host)."""


class ApiError(P2PAkashError):
    """The node answered with an error status; ``body`` is its JSON answer."""

    def __init__(self, status: int, body: Json) -> None:
        super().__init__(str(body.get("error", f"HTTP {status}")))
        self.status = status
        self.body = body


def normalize_url(url: str) -> str:
    """``host:port`` or ``http(s)://host:port[/prefix]`` -> URL without a trailing slash."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http URL: {url!r}")
    return text.rstrip("/")


def url_for_listen(listen: str) -> str:
    """The URL a local client uses for an API ``listen`` address (wildcards -> loopback)."""
    host, port = split_host_port(listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{join_host_port(host, port)}"


def node_url(node: str | None, home: Path | None) -> str:
    """``--node URL`` if given, else the API address of ``--home``'s config, else default."""
    if node:
        return normalize_url(node)
    if home is not None:
        from p2pakash import home as home_layout
        from p2pakash.config import load_config

        return url_for_listen(load_config(home_layout.config_path(home)).api.listen)
    return DEFAULT_URL


class NodeClient:
    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = 10.0) -> None:
        self.url = normalize_url(url)
        self.timeout = timeout

    def request(self, method: str, path: str, doc: object = None) -> Json:
        data = None if doc is None else json.dumps(doc).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"content-type": "application/json",
                                              "accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return self._json(resp.status, resp.read())
        except urllib.error.HTTPError as exc:
            body = self._json(exc.code, exc.read())
            raise ApiError(exc.code, body) from None
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            reason = getattr(exc, "reason", exc)
            raise NodeUnreachable(f"cannot reach node at {self.url}: {reason}") from None

    def _json(self, status: int, data: bytes) -> Json:
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(status, {"error": f"node at {self.url} answered HTTP {status}"
                                             f" without a JSON object"})
        return body

    # ------------------------------------------------------------ endpoints

    def status(self) -> Json:
        return self.request("GET", "/status")

    def account(self, address: str) -> Json:
        return self.request("GET", f"/account/{urllib.parse.quote(address, safe='')}")

    def validators(self) -> Json:
        return self.request("GET", "/validators")

    def block(self, height: int | str) -> Json:
        return self.request("GET", f"/block/{urllib.parse.quote(str(height), safe='')}")

    def tx(self, hash_hex: str) -> Json:
        return self.request("GET", f"/tx/{urllib.parse.quote(hash_hex, safe='')}")

    def submit(self, tx_bytes: bytes) -> Json:
        """POST /tx; a refused tx raises ApiError whose message is the reason."""
        return self.request("POST", "/tx", {"tx": tx_bytes.hex()})

    def wait_for_tx(self, hash_hex: str, *, timeout: float = 30.0, interval: float = 0.2,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic) -> Json:
        """Poll GET /tx until the tx is in a block; P2PAkashError after ``timeout`` s."""
        deadline = clock() + timeout
        while True:
            try:
                found = self.tx(hash_hex)
                if not found.get("pending"):
                    return found
            except ApiError as exc:
                if exc.status != 404:  # 404: committed but not indexed yet, or dropped
                    raise
            if clock() >= deadline:
                raise P2PAkashError(f"tx {hash_hex} not in a block after {timeout:g} s"
                                    f" (still pending, or dropped from the mempool)")
            sleep(interval)
