"""Everything an accelerator should measure, in one command of under 8 minutes.

On whatever JAX device is present, for the DDPM CIFAR-10 UNet of Ho et al. (2020,
arXiv 2006.11239; 35.7M parameters) computing in bfloat16 (parameters, optimiser state
and scheduler arithmetic in float32):

* training: examples (images) per second of genjax's jitted step at batch 128, against
  the paper's 21 steps/s x 128 = 2,688 images/s on a TPU v3-8 (Appendix B);
* sampling: images per second at batch 256 with DDPM (ancestral) and DDIM;
* model FLOPs from XLA's ``compiled.cost_analysis()``, and MFU against the device's peak
  dense bfloat16 FLOP/s (``PEAK_BF16_FLOPS``, cited there);
* diffusers PyTorch on the same weights, batch and steps (its eager pipelines and a
  plain PyTorch training step), as the ratio genjax / diffusers.

It drives ``benchmarks/peers.py`` (which checks the imported weights reproduce
diffusers' outputs before timing anything) and adds the device's peak, the targets of
the scale-out issue and whether each was met. On a CPU it runs the ``tiny`` UNet with
small batches and says so in the record: CPU numbers say nothing of an accelerator.

Usage::

    python benchmarks/accelerator.py            # writes benchmarks/results/accelerator_<device>.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import peers  # the sibling script, imported once its folder is on the path

PEAK_BF16_FLOPS: dict[str, tuple[float, str]] = {
    "h100 sxm": (989.4e12, "NVIDIA H100 Tensor Core GPU datasheet: BF16 1,979 TFLOPS with sparsity, SXM"),
    "h100 pcie": (756.0e12, "NVIDIA H100 Tensor Core GPU datasheet: BF16 1,513 TFLOPS with sparsity, PCIe"),
    "h200": (989.4e12, "NVIDIA H200 Tensor Core GPU datasheet: BF16 1,979 TFLOPS with sparsity, SXM"),
    "a100": (312.0e12, "NVIDIA A100 Tensor Core GPU datasheet: BF16 312 TFLOPS dense"),
    "tpu v4": (275.0e12, "Google Cloud TPU v4 system architecture: 275 bf16 TFLOPS per chip"),
    "tpu v5 lite": (197.0e12, "Google Cloud TPU v5e: 197 bf16 TFLOPS per chip"),
    "tpu v5p": (459.0e12, "Google Cloud TPU v5p: 459 bf16 TFLOPS per chip"),
    "tpu v6 lite": (918.0e12, "Google Cloud TPU v6e (Trillium): 918 bf16 TFLOPS per chip"),
}
"""Dense (no sparsity) bfloat16 peak FLOP/s per device: half of the datasheets' sparse
figures for NVIDIA parts."""

TARGETS = {
    "train_images_per_s": 2688.0,
    "sampling_mfu": 0.40,
    "sampling_ratio_vs_diffusers": 1.3,
}
"""The scale-out issue's targets on one H100: the paper's TPU v3-8 training rate
(21 steps/s at batch 128), 40% sampling MFU, 1.3x diffusers' sampling images/s."""

ACCELERATOR_SETTINGS = {"preset": "ddpm_cifar10", "batch": 256, "train_batch": 128, "steps": 100, "repeats": 3, "train_steps": 10}
CPU_SETTINGS = {"preset": "tiny", "batch": 16, "train_batch": 16, "steps": 10, "repeats": 3, "train_steps": 3}


def peak_flops(device_kind: str) -> tuple[float | None, str]:
    """The dense bfloat16 peak of a ``jax.Device.device_kind`` and its source, or None.

    An H100 whose kind names neither PCIe nor NVL is taken as the SXM part.
    """
    kind = device_kind.lower()
    if "h100" in kind:
        key = "h100 pcie" if "pcie" in kind else "h100 sxm"
        return PEAK_BF16_FLOPS[key]
    for name, (flops, source) in PEAK_BF16_FLOPS.items():
        if name in kind:
            return flops, source
    if "tpu v5" in kind:
        return PEAK_BF16_FLOPS["tpu v5p"]
    return None, f"no peak known for {device_kind!r}"


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets beside the measured values, each marked met or not."""
    sampling_mfu = max((result["sampling"][s]["genjax"]["mfu"] or 0.0) for s in peers.SAMPLERS)
    ratio = min(result["sampling"][s]["ratio_images_per_s"] for s in peers.SAMPLERS)
    measured = {
        "train_images_per_s": result["train_step"]["genjax"]["examples_per_s"],
        "sampling_mfu": sampling_mfu if result["peak_flops"] else None,
        "sampling_ratio_vs_diffusers": ratio,
    }
    return {
        name: {"target": goal, "measured": measured[name], "met": None if measured[name] is None else measured[name] >= goal} for name, goal in TARGETS.items()
    }


def output_path(device: jax.Device) -> pathlib.Path:
    """``benchmarks/results/accelerator_<device kind>.json`` (``_cpu`` on a CPU)."""
    slug = "cpu" if device.platform == "cpu" else re.sub(r"[^a-z0-9]+", "_", device.device_kind.lower()).strip("_")
    return pathlib.Path(__file__).resolve().parent / "results" / f"accelerator_{slug}.json"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="the JSON record (default benchmarks/results/accelerator_<device>.json)")
    args = parser.parse_args(argv)
    tic = time.perf_counter()
    device = jax.devices()[0]
    on_cpu = device.platform == "cpu"
    settings = CPU_SETTINGS if on_cpu else ACCELERATOR_SETTINGS
    peak, peak_source = (None, "CPU: no peak used") if on_cpu else peak_flops(device.device_kind)
    if on_cpu:
        print("accelerator.py: no accelerator found; running the tiny UNet on the CPU (these numbers say nothing of a GPU or TPU)")
    out = pathlib.Path(args.out) if args.out else output_path(device)
    peer_args = [
        "--preset",
        settings["preset"],
        "--batch",
        str(settings["batch"]),
        "--train-batch",
        str(settings["train_batch"]),
        "--steps",
        str(settings["steps"]),
        "--repeats",
        str(settings["repeats"]),
        "--train-steps",
        str(settings["train_steps"]),
        "--dtype",
        "bfloat16",
        "--json",
        str(out),
    ]
    if peak is not None:
        peer_args += ["--peak-flops", str(peak)]
    result = peers.main(peer_args)
    result["benchmark"] = "accelerator"
    result["command"] = "python benchmarks/accelerator.py" + (f" --out {args.out}" if args.out else "")
    result["on_cpu"] = on_cpu
    result["peak_bf16_flops"] = {"value": peak, "source": peak_source}
    result["targets"] = None if on_cpu else targets(result)
    result["total_wall_s"] = time.perf_counter() - tic
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"total {result['total_wall_s']:.0f} s; targets: {json.dumps(result['targets'])}")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
