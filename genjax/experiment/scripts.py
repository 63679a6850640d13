"""Helpers for the experiment and benchmark scripts' own command lines."""

from __future__ import annotations

import argparse


def positive_ints(text: str) -> tuple[int, ...]:
    """Parses ``"10,20,50"`` into ``(10, 20, 50)``: an argparse ``type`` for the scripts.

    Args:
      text: comma-separated integers, each at least 1; empty items are skipped.

    Returns:
      The integers in order.

    Raises:
      argparse.ArgumentTypeError: on a non-integer, a value below 1 or no values, so
        argparse prints one usage line naming the flag.
    """
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {text!r}")
    return values
