"""Fuzz the Podman executor against a podman service that answers with random JSON shapes.

A real HTTP server on 127.0.0.1 stands in for the podman service; for each example it
answers the container list, inspect, logs, image and delete calls with generated JSON
(or bytes) and status codes. ``PodmanExecutor`` talks to it through the real podman-py
client. Property: ``status``, ``logs``, ``adopt`` and ``teardown`` return their value or raise
ExecutorError; nothing else, within the deadline.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
from typing import Any

import trio
from hypothesis import example, given
from hypothesis import strategies as st

from p2pakash.errors import ExecutorError
from p2pakash.executor.base import LABEL_LEASE, LABEL_REPLICA, LABEL_SERVICE
from p2pakash.executor.podman import PodmanExecutor
from tests.fuzz.support import fuzz_settings

LEASE = "1.1.1.akash1provider"
ANSWERS: dict[str, tuple[int, bytes]] = {}


class _Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        path = self.path.split("?")[0]
        kind = ("list" if path.endswith("/containers/json") else
                "inspect" if path.endswith("/json") else
                "logs" if path.endswith("/logs") else "other")
        status, body = ANSWERS.get(kind, (200, b"{}"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@functools.cache
def executor() -> PodmanExecutor:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return PodmanExecutor(f"tcp://127.0.0.1:{server.server_address[1]}", api_timeout=5.0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
    | st.text(max_size=6),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=6)
labels = st.fixed_dictionaries(
    {LABEL_LEASE: st.just(LEASE)},
    optional={LABEL_SERVICE: st.just("web") | json_values,
              LABEL_REPLICA: st.sampled_from(["0", "1", "x", "²"]) | json_values}) | json_values
ports = st.lists(st.fixed_dictionaries(
    {}, optional={"container_port": st.just(80) | json_values,
                  "host_port": st.just(8080) | json_values, "protocol": st.just("tcp")})
    | json_values, max_size=2)
container = st.fixed_dictionaries(
    {}, optional={"Id": st.just("c1") | json_values, "Labels": labels,
                  "State": st.sampled_from(["running", "exited", "paused", "created"])
                  | json_values, "ExitCode": st.sampled_from([0, 1, 137]) | json_values,
                  "Ports": ports | json_values}) | json_values
statuses = st.sampled_from([200, 200, 200, 404, 500])


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


@fuzz_settings(25, deadline=None)
@given(statuses, st.lists(container, max_size=3).map(body) | json_values.map(body)
       | st.binary(max_size=20),
       statuses, st.fixed_dictionaries({}, optional={"State": json_values}).map(body)
       | json_values.map(body),
       statuses, st.binary(max_size=40))
# found by this test: KeyError (a port without container_port), AttributeError (a list
# entry or inspect answer that is not a map), TypeError (Labels not a map)
@example(200, body([{"Id": "c1", "Labels": {LABEL_LEASE: LEASE}, "State": "running",
                     "Ports": [{"host_port": "x"}]}]), 200, b"{}", 200, b"")
@example(200, body([1]), 200, b"[]", 200, b"")
@example(200, body([{"Id": "c1", "Labels": {LABEL_LEASE: LEASE}, "State": "exited"}]),
         200, b"[]", 200, b"")
def test_executor_against_random_answers(list_status: int, list_body: bytes,
                                         inspect_status: int, inspect_body: bytes,
                                         logs_status: int, logs_body: bytes) -> None:
    ANSWERS.update(list=(list_status, list_body), inspect=(inspect_status, inspect_body),
                   logs=(logs_status, logs_body))
    pod = executor()

    async def main() -> None:
        with trio.fail_after(10):
            found = await _ours(pod.status(LEASE))
            assert found is None or isinstance(found, list)
            await _ours(pod.logs(LEASE, tail=5))
            await _ours(pod.adopt())
            await _ours(pod.teardown(LEASE))

    trio.run(main)


async def _ours(call: Any) -> Any:
    try:
        return await call
    except ExecutorError as exc:
        assert str(exc)
        return None

