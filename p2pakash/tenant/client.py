"""The tenant endpoints of the node API, for the CLI (synchronous, stdlib urllib).

Rules: errors are ``NodeUnreachable`` / ``ApiError`` as in ``p2pakash.client`` (one line);
``create`` yields the NDJSON events of ``POST /deployments`` as they arrive, and raises
ApiError when the node refused the request before streaming (e.g. an invalid SDL).
A stream that breaks off before its ``done`` event is a P2PAkashError.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from p2pakash.client import ApiError, Json, NodeClient, NodeUnreachable
from p2pakash.errors import P2PAkashError


class TenantClient(NodeClient):
    def create(self, sdl: str, *, source: str, deposit: int | None, select: str | None,
               wait: float | None, denom_rates: dict[str, str]) -> Iterator[Json]:
        doc: dict[str, Any] = {"sdl": sdl, "source": source, "deposit": deposit,
                               "select": select, "wait": wait, "denom_rates": denom_rates}
        req = urllib.request.Request(self.url + "/deployments", data=json.dumps(doc).encode(),
                                     method="POST",
                                     headers={"content-type": "application/json",
                                              "accept": "application/x-ndjson"})
        timeout = self.timeout + (wait or 10.0) + 60.0
        try:
            resp = urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, self._json(exc.code, exc.read())) from None
        except (OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise NodeUnreachable(f"cannot reach node at {self.url}: {reason}") from None
        with resp:
            finished = False
            try:
                for raw in resp:
                    if not raw.strip():
                        continue
                    event = json.loads(raw)
                    finished = event.get("event") == "done"
                    yield event
            except (OSError, http.client.HTTPException, ValueError) as exc:
                raise P2PAkashError(f"deployment stream from {self.url} broke off: "
                                    f"{exc}") from None
            if not finished:
                raise P2PAkashError(f"deployment stream from {self.url} ended before the "
                                    f"deployment finished")

    def deployments(self) -> Json:
        return self.request("GET", "/deployments")

    def bids(self, dseq: int) -> Json:
        return self.request("GET", f"/deployments/{dseq}/bids")

    def deposit(self, dseq: int, amount: int) -> Json:
        return self.request("POST", f"/deployments/{dseq}/deposit", {"amount": amount})

    def close_deployment(self, dseq: int) -> Json:
        return self.request("POST", f"/deployments/{dseq}/close", {})

    def leases(self) -> Json:
        return self.request("GET", "/leases")

    def lease_status(self, lease: str) -> Json:
        return self.request("GET", f"/leases/{_q(lease)}/status")

    def lease_logs(self, lease: str, *, service: str = "", tail: int = 100) -> Json:
        query = urllib.parse.urlencode({"service": service, "tail": tail})
        return self.request("GET", f"/leases/{_q(lease)}/logs?{query}")

    def close_lease(self, lease: str) -> Json:
        return self.request("POST", f"/leases/{_q(lease)}/close", {})


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")
