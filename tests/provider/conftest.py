"""The session-wide podman service fixture, shared with the executor tests."""

from __future__ import annotations

from tests.executor.conftest import podman_service

__all__ = ["podman_service"]
