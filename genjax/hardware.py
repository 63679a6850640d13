"""What a reported number was measured on: the host CPU and the accelerator."""

from __future__ import annotations

import os
import pathlib
import platform
from typing import Any

import jax


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, or the platform's machine name."""
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description() -> str:
    """``platform:device_kind`` of the first device; on CPU also the core count and model."""
    device = jax.devices()[0]
    text = f"{device.platform}:{device.device_kind}"
    if device.platform == "cpu":
        text += f" ({os.cpu_count()} cores, {cpu_name()})"
    return text


def compiled_cost(compiled: Any) -> dict[str, float]:
    """XLA's cost analysis of a compiled program (``jit(f).lower(...).compile()``) as one
    dict, e.g. ``{"flops": ...}``; empty where the backend does not provide one.

    jax has returned it as a dict, a one-element list of dicts or None across versions.
    """
    try:
        cost = compiled.cost_analysis()
    except Exception:  # cost analysis is optional and backend-specific
        return {}
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return dict(cost or {})
