"""A Podman API service for the whole test session, or a skip saying why there is none.

Set P2PAKASH_REQUIRE_PODMAN=1 (CI) to turn that skip into an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from p2pakash.errors import ExecutorError
from p2pakash.executor.podman_setup import (
    PodmanService,
    podman_unusable_reason,
    start_service,
)


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("P2PAKASH_REQUIRE_PODMAN") == "1":
        pytest.fail(f"podman required but unusable: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def podman_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanService]:
    workdir = tmp_path_factory.mktemp("podman")
    reason = podman_unusable_reason(workdir)
    if reason is not None:
        _skip_or_fail(reason)
    try:
        service = start_service(workdir)
    except ExecutorError as exc:
        _skip_or_fail(str(exc))
        raise
    try:
        yield service
    finally:
        service.stop()
