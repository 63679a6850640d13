"""genjax next to diffusers/PyTorch on the same UNet weights, in one process.

A diffusers ``UNet2DModel`` is built from a named preset with a fixed seed, every
parameter is perturbed (diffusers zero-initialises some layers, which would make the
outputs trivial), the model is saved with safetensors and imported into genjax with
:func:`genjax.nn.diffusers_import.load_diffusers_ddpm_unet` (genjax's own DDPM
``UNet``, the network the ``ddpm`` family trains), so the two libraries run
exactly the same weights. A forward pass on the same inputs is compared once at
start-up (in float32 at full precision on both sides).

Then, alternating the libraries run by run after one warm-up each:

* sampling, DDPM (ancestral, ``fixed_small`` variance) and DDIM (``eta = 0``) with the
  same number of steps and batch: diffusers' eager ``DDPMPipeline`` / ``DDIMPipeline``
  (linear 1000-step schedule, ``timestep_spacing="linspace"``, clipped ``x0``,
  ``output_type="pt"``) against genjax's ``samplers.sample_batch`` compiled with
  ``jax.jit(...).lower(...).compile()`` (compile time reported separately);
* one DDPM training step (L_simple, Ho et al. 2020, arXiv 2006.11239, Algorithm 1;
  Adam at 2e-4): genjax's ``build_train_step`` on the loss of the ``ddpm`` task
  (``genjax.models.diffusion.make_loss``) against the diffusers UNet trained by plain
  PyTorch (MSE between predicted and true noise, ``torch.optim.Adam``).

For each it reports the median wall time, images/s, network evaluations/s, achieved
FLOP/s and MFU (when ``--peak-flops`` is given), and the ratio of genjax's throughput
to the PyTorch side's. The torch side is plain eager PyTorch, as users run diffusers;
``torch.compile`` is not used.

Usage::

    python benchmarks/peers.py                      # the `small` preset on CPU
    python benchmarks/peers.py --preset ddpm_cifar10 --batch 256 --train-batch 256 \\
        --dtype bfloat16 --peak-flops 989e12
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import pathlib
import platform
import re
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import diffusers
import flax
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    DDIMPipeline,
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    UNet2DModel,
)

from genjax import samplers
from genjax.experiment.ddpm import unet_apply
from genjax.hardware import compiled_cost, cpu_name, device_description
from genjax.models import diffusion as diff
from genjax.nn.diffusers_import import (
    DDPM_CIFAR10_DIFFUSERS_CONFIG,
    load_diffusers_ddpm_unet,
)
from genjax.nn.unet import UNet
from genjax.train import (
    LossUpdate,
    build_train_step,
    create_train_state,
    make_optimizer,
    num_params,
)

# JAX and torch share one GPU here: JAX must not preallocate most of its memory. The
# variable is read when the GPU client is created (first device use), not on import.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

T = 1000  # training timesteps of the linear DDPM schedule (beta 1e-4 .. 0.02)
LEARNING_RATE = 2e-4  # DDPM's Adam learning rate (Ho et al. 2020, Appendix B)
PARITY_REL_TOL = 1e-4  # of max|output|; float32 round-off is ~3e-6 of it
SAMPLERS = ("ddpm", "ddim")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

DDPM_CIFAR10_CONFIG = DDPM_CIFAR10_DIFFUSERS_CONFIG


@dataclasses.dataclass(frozen=True)
class Preset:
    """A diffusers UNet configuration to benchmark.

    Attributes:
      config: the ``UNet2DModel`` config (DDPM conventions, importable by genjax).
      perturb: standard deviation of the Gaussian added to every parameter.
      gflop_per_eval: known GFLOP of one network evaluation of one image, or None to
        use XLA's cost analysis of genjax's forward pass.
    """

    config: dict[str, Any]
    perturb: float
    gflop_per_eval: float | None = None


PRESETS: dict[str, Preset] = {
    # For tests: one level at 8x8 with the middle's attention. A second level would
    # double the test's time: the gradient of its strided conv is slow to compile on
    # CPU. Multi-level imports are covered by tests/test_diffusers_import.py.
    "tiny": Preset(
        {
            **DDPM_CIFAR10_CONFIG,
            "block_out_channels": [8],
            "down_block_types": ["DownBlock2D"],
            "up_block_types": ["UpBlock2D"],
            "layers_per_block": 1,
            "norm_num_groups": 4,
            "sample_size": 8,
        },
        perturb=0.1,
    ),
    # For a CPU: three levels at 32x32x3, attention at 16x16 and in the middle.
    "small": Preset(
        {
            **DDPM_CIFAR10_CONFIG,
            "block_out_channels": [32, 64, 64],
            "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
            "layers_per_block": 1,
            "norm_num_groups": 8,
        },
        perturb=0.1,
    ),
    # The paper's CIFAR-10 network, 35,746,307 parameters: for a GPU.
    "ddpm_cifar10": Preset(DDPM_CIFAR10_CONFIG, perturb=0.02, gflop_per_eval=12.44),
}

NOTES = (
    (
        "The torch side is plain eager PyTorch (no torch.compile), as users run diffusers pipelines; "
        "genjax runs one XLA program per call (the whole reverse process is one lax.scan)."
    ),
    (
        "Both sides run the same weights (saved by diffusers as safetensors, imported by "
        "genjax.nn.diffusers_import) and the same schedule (linear betas 1e-4..0.02, T=1000, "
        "timestep_spacing='linspace', clipped x0, DDPM fixed_small variance, DDIM eta=0 with "
        "use_clipped_model_output=True), with the same number of network evaluations per image (steps)."
    ),
    (
        "DDIM: diffusers' DDIMScheduler steps from t to t - T // steps, not to the next entry of its "
        "linspace timestep list as genjax does, so the DDIM samples differ slightly; the work per step is the same."
    ),
    (
        "Sampling: the diffusers pipelines also map the final images to [0, 1] (x / 2 + 0.5, clamp), "
        "genjax returns model-scale samples; both keep the result on the device (output_type='pt')."
    ),
    (
        "Training: genjax's step (build_train_step with the ddpm task's loss) also computes the one-t "
        "L_vlb estimate, grad and param norms as metrics and draws t and noise per example from "
        "fold_in(key, step); the torch step computes only the MSE loss. Dropout is 0 on both sides; "
        "Adam with lr 2e-4, b1 0.9, b2 0.999, eps 1e-8 on both."
    ),
    "Timings alternate genjax and torch run by run after one warm-up each; medians are reported.",
)


# ----------------------------------------------------------------------- models


def build_torch_unet(preset: Preset, seed: int) -> UNet2DModel:
    """The preset's diffusers UNet with every parameter moved by ``perturb * N(0, 1)``.

    Args:
      preset: the configuration and the perturbation scale.
      seed: ``torch.manual_seed`` before building and perturbing.

    Returns:
      The model in eval mode, on the CPU, float32.
    """
    torch.manual_seed(seed)
    model = UNet2DModel.from_config(preset.config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(preset.perturb * torch.randn_like(p))
    return model


def import_into_genjax(torch_model: UNet2DModel, dtype: Any) -> tuple[UNet, Any]:
    """Saves the diffusers model with safetensors and loads it with genjax's importer.

    Args:
      torch_model: the diffusers UNet (on the CPU).
      dtype: genjax's computation dtype.

    Returns:
      ``(model, params)`` from :func:`load_diffusers_ddpm_unet`.
    """
    with tempfile.TemporaryDirectory(prefix="genjax_peers_") as folder:
        torch_model.save_pretrained(folder, safe_serialization=True)
        return load_diffusers_ddpm_unet(folder, dtype=dtype)


def schedulers() -> tuple[DDPMScheduler, DDIMScheduler]:
    """diffusers' DDPM and DDIM schedulers configured as genjax's samplers.

    The settings of ``tests/test_scheduler_parity.py``: linear betas over 1000 steps,
    ``timestep_spacing="linspace"``, epsilon prediction, ``x0`` clipped to [-1, 1],
    ``fixed_small`` variance for DDPM and ``set_alpha_to_one`` for DDIM.
    """
    common = {
        "num_train_timesteps": T,
        "beta_schedule": "linear",
        "beta_start": 1e-4,
        "beta_end": 0.02,
        "clip_sample": True,
        "clip_sample_range": 1.0,
        "prediction_type": "epsilon",
        "thresholding": False,
        "timestep_spacing": "linspace",
        "steps_offset": 0,
    }
    return DDPMScheduler(variance_type="fixed_small", **common), DDIMScheduler(set_alpha_to_one=True, **common)


def torch_sync(device: torch.device) -> None:
    """Waits for the device's queued torch work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_parity(torch_model: UNet2DModel, model: UNet, params: Any, device: torch.device, seed: int, batch: int = 2) -> tuple[dict[str, Any], float | None]:
    """Compares one forward pass of the two libraries on the same inputs, in float32.

    Both sides run at full float32 precision for the check (no TF32), so the difference
    measures the weights and the network, not the arithmetic mode used for timing.

    Args:
      torch_model: the diffusers UNet (on ``device``).
      model: the genjax UNet (its dtype is replaced by float32 here).
      params: the imported parameters.
      device: the torch device.
      seed: seed of the inputs.
      batch: number of inputs; their timesteps are spread over [0, T-1].

    Returns:
      The parity record (max abs difference, output scale, tolerance, passed) and the
      FLOPs of one network evaluation of one image from XLA's cost analysis (or None).
    """
    cfg = torch_model.config
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, cfg.in_channels, cfg.sample_size, cfg.sample_size)).astype(np.float32)
    t = np.round(np.linspace(T - 1, 0, batch)).astype(np.int64)
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.inference_mode():
            ref = torch_model(torch.from_numpy(x).to(device), torch.from_numpy(t).to(device)).sample
            ref = ref.float().cpu().numpy().transpose(0, 2, 3, 1)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    model32 = model.clone(dtype=jnp.float32)
    x_nhwc = jnp.asarray(x.transpose(0, 2, 3, 1))
    t32 = jnp.asarray(t, jnp.float32)
    with jax.default_matmul_precision("highest"):
        compiled = jax.jit(model32.apply).lower(params, x_nhwc, t32).compile()
        out = np.asarray(compiled(params, x_nhwc, t32))
    flops = compiled_cost(compiled).get("flops")
    scale = float(np.max(np.abs(ref)))
    err = float(np.max(np.abs(out - ref)))
    record = {
        "max_abs_diff": err,
        "max_abs_output": scale,
        "tolerance": PARITY_REL_TOL * scale,
        "passed": bool(out.shape == ref.shape and scale > 0.1 and err <= PARITY_REL_TOL * scale),
        "batch": batch,
        "timesteps": t.tolist(),
        "precision": "float32, jax default_matmul_precision('highest'), torch TF32 off",
    }
    return record, None if flops is None else float(flops) / batch


# --------------------------------------------------------------------- timing


def alternate(runs: dict[str, Callable[[int], None]], repeats: int) -> dict[str, list[float]]:
    """Times the runs in turn (``a, b, a, b, ...``), ``repeats`` times each.

    Args:
      runs: name -> ``run(i)``, which must wait for its own results.
      repeats: timed calls per run.

    Returns:
      name -> wall times in seconds, in call order.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(repeats):
        for name, run in runs.items():
            tic = time.perf_counter()
            run(i)
            times[name].append(time.perf_counter() - tic)
    return times


def timed(fn: Callable[[], Any]) -> float:
    """Wall time in seconds of one call of ``fn``."""
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def rates(seconds: list[float], work: int, evals_per_item: int, flops_per_eval: float | None, peak_flops: float | None) -> dict[str, Any]:
    """Median time and the throughputs derived from it.

    Args:
      seconds: wall times of the timed runs.
      work: images (or training examples) per run.
      evals_per_item: network evaluations per image (1 for a training example).
      flops_per_eval: FLOPs per image per evaluation (per example for training), if known.
      peak_flops: the device's peak FLOP/s, if known.
    """
    median = statistics.median(seconds)
    per_s = work / median
    flops_per_s = None if flops_per_eval is None else flops_per_eval * per_s * evals_per_item
    return {
        "seconds_median": median,
        "seconds_all": seconds,
        "items_per_s": per_s,
        "evals_per_s": per_s * evals_per_item,
        "flops_per_s": flops_per_s,
        "mfu": None if flops_per_s is None or not peak_flops else flops_per_s / peak_flops,
    }


def bench_sampling(
    sampler: str,
    torch_model: UNet2DModel,
    scheduler: DDPMScheduler | DDIMScheduler,
    model: UNet,
    params: Any,
    args: argparse.Namespace,
    device: torch.device,
    flops_per_eval: float | None,
) -> dict[str, Any]:
    """Times one sampler in genjax and in the diffusers pipeline, alternating.

    Args:
      sampler: ``"ddpm"`` or ``"ddim"``.
      torch_model: the diffusers UNet on ``device``.
      scheduler: the matching diffusers scheduler.
      model: the genjax UNet (in the benchmark dtype).
      params: its parameters.
      args: the parsed command line (batch, steps, repeats, dtype, seed, peak_flops).
      device: the torch device.
      flops_per_eval: FLOPs of one network evaluation of one image, if known.

    Returns:
      The record: per-library timings and rates, and the genjax/diffusers ratio of images/s.
    """
    cfg = torch_model.config
    shape = (cfg.sample_size, cfg.sample_size, cfg.in_channels)
    abar = diff.make_schedule(diff.beta_schedule("linear", T)).alphas_cumprod
    options = {"eta": 0.0} if sampler == "ddim" else {"variance": "small"}
    built = samplers.get_sampler(sampler, clip_x0=True, **options)

    def run(p: Any, key: jax.Array) -> jax.Array:
        denoiser = samplers.denoiser_from_apply(lambda x, t: model.apply(p, x, t), alphas_cumprod=abar)
        return samplers.sample_batch(denoiser, abar, key, args.batch, shape, sampler=built, steps=args.steps)

    key = jax.random.key(args.seed)
    keys = [jax.random.fold_in(key, i) for i in range(args.repeats + 1)]
    tic = time.perf_counter()
    lowered = jax.jit(run).lower(params, key)
    lower_s = time.perf_counter() - tic
    tic = time.perf_counter()
    compiled = lowered.compile()
    xla_compile_s = time.perf_counter() - tic

    pipe_cls = DDPMPipeline if sampler == "ddpm" else DDIMPipeline
    pipe = pipe_cls(unet=torch_model, scheduler=scheduler).to(device)
    pipe.set_progress_bar_config(disable=True)
    call_kw: dict[str, Any] = {"eta": 0.0, "use_clipped_model_output": True} if sampler == "ddim" else {}
    autocast = args.dtype == "bfloat16"
    generators = [torch.Generator(device).manual_seed(args.seed + i) for i in range(args.repeats + 1)]

    def genjax_run(i: int) -> None:
        jax.block_until_ready(compiled(params, keys[i]))

    def torch_run(i: int) -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            pipe(batch_size=args.batch, generator=generators[i], num_inference_steps=args.steps, output_type="pt", return_dict=False, **call_kw)
        torch_sync(device)

    genjax_first = timed(lambda: genjax_run(args.repeats))
    torch_first = timed(lambda: torch_run(args.repeats))
    times = alternate({"genjax": genjax_run, "diffusers": torch_run}, args.repeats)

    nfe = samplers.num_evaluations(sampler, args.steps)
    genjax_rec = {
        "lower_s": lower_s,
        "xla_compile_s": xla_compile_s,
        "compile_s": lower_s + xla_compile_s,
        "first_call_s": genjax_first,
        **rates(times["genjax"], args.batch, nfe, flops_per_eval, args.peak_flops),
    }
    torch_rec = {
        "pipeline": pipe_cls.__name__,
        "output_type": "pt",
        "first_call_s": torch_first,
        **rates(times["diffusers"], args.batch, nfe, flops_per_eval, args.peak_flops),
    }
    for rec in (genjax_rec, torch_rec):
        rec["images_per_s"] = rec.pop("items_per_s")
    # The pipeline's own scheduler (DDIMPipeline rebuilds it from the config).
    pipe.scheduler.set_timesteps(args.steps)
    grid = samplers.timesteps(sampler, args.steps, T)[:-1]
    return {
        "evals_per_image": nfe,
        "timesteps_match": bool(np.array_equal(pipe.scheduler.timesteps.cpu().numpy(), grid)),
        "genjax": genjax_rec,
        "diffusers": torch_rec,
        "ratio_images_per_s": genjax_rec["images_per_s"] / torch_rec["images_per_s"],
    }


def bench_train_step(
    torch_model: UNet2DModel,
    model: UNet,
    params: Any,
    args: argparse.Namespace,
    device: torch.device,
) -> dict[str, Any]:
    """Times one DDPM training step (L_simple, Adam 2e-4) in genjax and in PyTorch.

    Each timed run is a block of ``--train-steps`` steps ended by a device sync; the
    step time is the block time over the number of steps.

    Args:
      torch_model: the diffusers UNet (copied here; the copy is trained).
      model: the genjax UNet (in the benchmark dtype).
      params: its parameters (copied into the train state).
      args: the parsed command line.
      device: the torch device.

    Returns:
      The record: per-library timings and rates, and the genjax/torch ratio of steps/s.
    """
    cfg = torch_model.config
    rng = np.random.default_rng(args.seed + 1)
    x0 = rng.uniform(-1.0, 1.0, (args.train_batch, cfg.in_channels, cfg.sample_size, cfg.sample_size)).astype(np.float32)
    n = args.train_steps

    # genjax: the ddpm task's loss (eps prediction, L_simple) through the library's step.
    diffusion = diff.Diffusion(schedule=diff.make_schedule(diff.beta_schedule("linear", T)), loss="simple")
    optimizer = make_optimizer("adam", learning_rate=LEARNING_RATE)
    train_step = build_train_step(LossUpdate(diff.make_loss(diffusion, unet_apply(model)), optimizer), parallel="jit", devices=jax.devices()[:1])
    holder = {"state": train_step.place_state(create_train_state(params, optimizer))}
    batch = train_step.place_batch({"image": x0.transpose(0, 2, 3, 1)})
    key = jax.random.key(args.seed)
    tic = time.perf_counter()
    lowered = train_step.step.lower(holder["state"], batch, key)
    lower_s = time.perf_counter() - tic
    tic = time.perf_counter()
    compiled = lowered.compile()
    xla_compile_s = time.perf_counter() - tic
    program_flops = compiled_cost(compiled).get("flops")
    flops_per_example = None if program_flops is None else float(program_flops) / args.train_batch

    def genjax_steps(count: int) -> None:
        metrics = None
        for _ in range(count):
            holder["state"], metrics = compiled(holder["state"], batch, key)
        jax.block_until_ready((holder["state"], metrics))

    # PyTorch: the same UNet, MSE between predicted and true noise on q(x_t | x_0).
    net = copy.deepcopy(torch_model).to(device).train()
    adam = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE, betas=(0.9, 0.999), eps=1e-8)
    abar = torch.as_tensor(diff.make_schedule(diff.beta_schedule("linear", T)).alphas_cumprod.tolist(), dtype=torch.float32, device=device)
    x0_t = torch.from_numpy(x0).to(device)
    generator = torch.Generator(device).manual_seed(args.seed)
    autocast = args.dtype == "bfloat16"

    def torch_step() -> None:
        t = torch.randint(0, T, (x0_t.shape[0],), device=device, generator=generator)
        noise = torch.randn(x0_t.shape, device=device, generator=generator)
        a = abar[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0_t + (1.0 - a).sqrt() * noise
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            pred = net(xt, t).sample
        loss = F.mse_loss(pred.float(), noise)
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()

    def torch_steps(count: int) -> None:
        for _ in range(count):
            torch_step()
        torch_sync(device)

    genjax_first = timed(lambda: genjax_steps(1))
    torch_first = timed(lambda: torch_steps(1))
    times = alternate({"genjax": lambda i: genjax_steps(n), "torch": lambda i: torch_steps(n)}, args.repeats)
    records = {}
    for name, first in (("genjax", genjax_first), ("torch", torch_first)):
        per_step = [s / n for s in times[name]]
        r = rates(per_step, args.train_batch, 1, flops_per_example, args.peak_flops)
        records[name] = {
            "first_call_s": first,
            "seconds_per_step_median": r["seconds_median"],
            "seconds_per_step_all": per_step,
            "seconds_per_block_all": times[name],
            "steps_per_s": 1.0 / r["seconds_median"],
            "examples_per_s": r["items_per_s"],
            "flops_per_s": r["flops_per_s"],
            "mfu": r["mfu"],
        }
    records["genjax"] = {"lower_s": lower_s, "xla_compile_s": xla_compile_s, "compile_s": lower_s + xla_compile_s, **records["genjax"]}
    records["torch"]["optimizer"] = "torch.optim.Adam (default implementation for the device)"
    return {
        "batch": args.train_batch,
        "steps_per_run": n,
        "flops_per_example": flops_per_example,
        "flops_source": "XLA cost analysis of genjax's compiled train step / batch",
        "genjax": records["genjax"],
        "torch": records["torch"],
        "ratio_steps_per_s": records["genjax"]["steps_per_s"] / records["torch"]["steps_per_s"],
    }


# ----------------------------------------------------------------------- main


def default_output(dtype: str) -> pathlib.Path:
    """``benchmarks/results/peers_<device>[_bf16].json`` for the first JAX device."""
    dev = jax.devices()[0]
    slug = "cpu" if dev.platform == "cpu" else re.sub(r"[^a-z0-9]+", "_", dev.device_kind.lower()).strip("_")
    suffix = "" if dtype == "float32" else "_bf16"
    return pathlib.Path(__file__).resolve().parent / "results" / f"peers_{slug}{suffix}.json"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parses and validates the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small", help="the UNet (default: small, for a CPU)")
    parser.add_argument("--steps", type=int, default=20, help="sampler steps (network evaluations per image)")
    parser.add_argument("--batch", type=int, default=16, help="images per sampling run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per library, after one warm-up each")
    parser.add_argument("--train-batch", type=int, default=16, help="examples per training step")
    parser.add_argument("--train-steps", type=int, default=3, help="training steps per timed run")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="genjax UNet dtype; bfloat16 also turns on torch.autocast(bfloat16)")
    parser.add_argument("--peak-flops", type=float, default=None, help="the device's peak FLOP/s for MFU (e.g. 989e12 for H100 bf16 dense)")
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads (default: os.cpu_count())")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, metavar="OUT", help="output file (default: benchmarks/results/peers_<device>.json)")
    args = parser.parse_args(argv)
    for name in ("steps", "batch", "repeats", "train_batch", "train_steps", "torch_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected a positive int, got {getattr(args, name)}")
    if args.steps > T:
        parser.error(f"--steps: expected at most T={T}, got {args.steps}")
    if args.peak_flops is not None and args.peak_flops <= 0:
        parser.error(f"--peak-flops: expected a positive FLOP/s, got {args.peak_flops}")
    return args


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(result: dict[str, Any]) -> None:
    """Prints the medians, rates and ratios."""
    header = f"{'task':<12}{'library':<11}{'compile_s':>10}{'median_s':>10}{'items/s':>10}{'evals/s':>10}{'GFLOP/s':>9}{'mfu':>7}{'ratio':>7}"
    print(header)
    print("-" * len(header))

    def row(task: str, lib: str, r: dict[str, Any], seconds: float, items: float, evals: float | None, ratio: float | None) -> None:
        gflops = None if r["flops_per_s"] is None else r["flops_per_s"] / 1e9
        mfu = None if r["mfu"] is None else 100 * r["mfu"]
        print(
            f"{task:<12}{lib:<11}{_fmt(r.get('compile_s'), '.2f'):>10}{seconds:>10.3f}{items:>10.2f}"
            f"{_fmt(evals, '.1f'):>10}{_fmt(gflops, '.1f'):>9}{_fmt(mfu, '.1f'):>7}{_fmt(ratio, '.2f'):>7}"
        )

    for sampler in SAMPLERS:
        rec = result["sampling"][sampler]
        for lib in ("genjax", "diffusers"):
            r = rec[lib]
            ratio = rec["ratio_images_per_s"] if lib == "genjax" else None
            row(sampler, lib, r, r["seconds_median"], r["images_per_s"], r["evals_per_s"], ratio)
    rec = result["train_step"]
    for lib in ("genjax", "torch"):
        r = rec[lib]
        ratio = rec["ratio_steps_per_s"] if lib == "genjax" else None
        row("train step", lib, r, r["seconds_per_step_median"], r["examples_per_s"], None, ratio)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs the comparison, prints a table and writes the JSON record.

    Args:
      argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
      The record written to the JSON file.

    Raises:
      SystemExit: when the forward passes of the two libraries do not agree.
    """
    args = parse_args(argv)
    load_start = list(os.getloadavg())
    command = shlex.join(["python", "benchmarks/peers.py", *(sys.argv[1:] if argv is None else argv)])
    torch.set_num_threads(args.torch_threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    preset = PRESETS[args.preset]

    torch_model = build_torch_unet(preset, args.seed)
    torch_params = sum(p.numel() for p in torch_model.parameters())
    model, params = import_into_genjax(torch_model, DTYPES[args.dtype])
    torch_model = torch_model.to(device)
    if num_params(params) != torch_params:
        raise SystemExit(f"parameter counts differ: genjax {num_params(params)}, diffusers {torch_params}")
    parity, cost_flops = check_parity(torch_model, model, params, device, args.seed)
    print(
        f"device: {device_description()} | torch on {device} ({torch.get_num_threads()} threads) | preset {args.preset}, "
        f"{torch_params:,} params, {args.dtype}, batch {args.batch}, {args.steps} steps, {args.repeats} repeats"
    )
    print(f"parity: max|genjax - diffusers| = {parity['max_abs_diff']:.3g} (output scale {parity['max_abs_output']:.3g}, tolerance {parity['tolerance']:.3g})")
    if not parity["passed"]:
        raise SystemExit("parity check failed: the imported network does not reproduce the diffusers one")
    if preset.gflop_per_eval is not None:
        flops_per_eval, source = preset.gflop_per_eval * 1e9, "known for the preset"
    else:
        flops_per_eval, source = cost_flops, "XLA cost analysis of genjax's float32 forward pass / batch"

    ddpm_scheduler, ddim_scheduler = schedulers()
    sampling = {}
    for sampler, scheduler in zip(SAMPLERS, (ddpm_scheduler, ddim_scheduler)):
        sampling[sampler] = bench_sampling(sampler, torch_model, scheduler, model, params, args, device, flops_per_eval)
        print(f"{sampler}: genjax/diffusers images/s = {sampling[sampler]['ratio_images_per_s']:.3f}", flush=True)
    train = bench_train_step(torch_model, model, params, args, device)
    print(f"train step: genjax/torch steps/s = {train['ratio_steps_per_s']:.3f}", flush=True)

    jax_dev = jax.devices()[0]
    result = {
        "benchmark": "peers",
        "command": command,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": {
            "jax": device_description(),
            "jax_platform": jax_dev.platform,
            "jax_device_kind": jax_dev.device_kind,
            "torch": str(device) if device.type == "cpu" else f"{device}: {torch.cuda.get_device_name(device)}",
            "cpu": cpu_name(),
        },
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "flax": flax.__version__,
            "numpy": np.__version__,
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
        },
        "threads": {
            "os_cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "torch_num_threads": torch.get_num_threads(),
            "torch_num_interop_threads": torch.get_num_interop_threads(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
        },
        "load_average": {"start": load_start, "end": list(os.getloadavg())},
        "precision": {
            "dtype": args.dtype,
            "torch_autocast_bfloat16": args.dtype == "bfloat16",
            "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
            "torch_cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "torch_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        },
        "preset": args.preset,
        "unet_config": preset.config,
        "num_params": torch_params,
        "image_shape": [preset.config["sample_size"], preset.config["sample_size"], preset.config["in_channels"]],
        "batch": args.batch,
        "steps": args.steps,
        "repeats": args.repeats,
        "train_batch": args.train_batch,
        "train_steps_per_run": args.train_steps,
        "seed": args.seed,
        "peak_flops": args.peak_flops,
        "torch_compile": False,
        "parity": parity,
        "flops_per_eval": flops_per_eval,
        "flops_per_eval_source": source,
        "flops_per_eval_cost_analysis": cost_flops,
        "sampling": sampling,
        "train_step": train,
        "notes": list(NOTES),
    }
    print()
    print_table(result)
    out = pathlib.Path(args.json) if args.json else default_output(args.dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    bad = [
        k
        for k, v in (("ddpm", sampling["ddpm"]["ratio_images_per_s"]), ("ddim", sampling["ddim"]["ratio_images_per_s"]), ("train", train["ratio_steps_per_s"]))
        if not math.isfinite(v)
    ]
    if bad:
        raise SystemExit(f"non-finite ratios for {bad}")
    return result


if __name__ == "__main__":
    main()
