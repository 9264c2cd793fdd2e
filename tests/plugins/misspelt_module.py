"""A plugin module with a misspelt hook: check_pending must refuse it by name."""

from __future__ import annotations


def p2pakash_bid_prise(group: object) -> None:
    raise AssertionError("never called")
