"""Optimisers and learning-rate schedules from explicit arguments."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import optax

OPTIMIZERS = ("adam", "adamw", "adagrad", "rmsprop", "sgd", "momentum")
SCHEDULES = ("constant", "cosine", "linear", "iwae")


def iwae_schedule(learning_rate: float, steps_per_epoch: int, num_stages: int = 8) -> optax.Schedule:
    """The step-size schedule of Burda et al., arXiv:1509.00519, section 5.

    Stage i = 0..num_stages-1 lasts 3^i epochs at ``learning_rate * 10^(-i/7)``; with the
    default 8 stages that is 3,280 epochs in all.

    Args:
      learning_rate: the rate of the first stage (1e-3 in the paper).
      steps_per_epoch: optimiser steps per pass over the training set.
      num_stages: number of stages.
    """
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch: expected a positive int, got {steps_per_epoch}")
    boundaries, step = {}, 0
    for i in range(1, num_stages):
        step += 3 ** (i - 1) * steps_per_epoch
        boundaries[step] = 10.0 ** (-1.0 / 7.0)
    return optax.piecewise_constant_schedule(learning_rate, boundaries)


def make_optimizer(
    name: str = "adam",
    *,
    learning_rate: float,
    schedule: str = "constant",
    steps_per_epoch: int = 0,
    warmup_steps: int = 0,
    decay_steps: int = 0,
    grad_clip: float | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    """Builds an optax optimiser with a learning-rate schedule and optional clipping.

    Args:
      name: one of ``OPTIMIZERS``.
      learning_rate: peak learning rate.
      schedule: ``"constant"`` (after an optional linear warm-up), ``"cosine"`` (warm-up,
        then cosine decay to 0 over ``decay_steps``), ``"linear"`` (warm-up, then linear
        decay to 0 over ``decay_steps``, as WGAN-GP's CIFAR-10 models) or ``"iwae"``
        (``iwae_schedule``).
      steps_per_epoch: steps per epoch, for the ``"iwae"`` schedule.
      warmup_steps: linear warm-up from 0 over this many steps.
      decay_steps: length of the cosine decay after warm-up.
      grad_clip: if set, clip gradients to this global norm first.
      b1: Adam's first-moment decay.
      b2: Adam's second-moment decay; RMSProp's decay of its squared-gradient average.
      eps: Adam's epsilon.
      weight_decay: AdamW's decoupled weight decay.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {name!r}")
    _check_range("learning_rate", learning_rate, "a finite float > 0", lambda v: 0 < v < math.inf)
    _check_range("b1", b1, "a float in [0, 1)", lambda v: 0 <= v < 1)
    _check_range("b2", b2, "a float in [0, 1)", lambda v: 0 <= v < 1)
    _check_range("eps", eps, "a finite float >= 0", lambda v: 0 <= v < math.inf)
    _check_range("weight_decay", weight_decay, "a finite float >= 0", lambda v: 0 <= v < math.inf)
    if grad_clip is not None:
        _check_range("grad_clip", grad_clip, "a finite float > 0 or None", lambda v: 0 < v < math.inf)
    if warmup_steps < 0 or decay_steps < 0:
        raise ValueError(f"warmup_steps/decay_steps: expected non-negative ints, got {warmup_steps}, {decay_steps}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {SCHEDULES}, got {schedule!r}")
    if schedule in ("cosine", "linear") and decay_steps <= 0:
        raise ValueError(f"decay_steps: the {schedule} schedule needs a positive int, got {decay_steps}")
    if schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, warmup_steps + decay_steps)
    elif schedule == "linear":
        decay = optax.linear_schedule(learning_rate, 0.0, decay_steps)
        lr = optax.join_schedules([optax.linear_schedule(0.0, learning_rate, warmup_steps), decay], [warmup_steps]) if warmup_steps else decay
    elif schedule == "iwae":
        lr = iwae_schedule(learning_rate, steps_per_epoch)
    elif warmup_steps > 0:
        lr = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    else:
        lr = learning_rate
    if name == "adam":
        opt = optax.adam(lr, b1=b1, b2=b2, eps=eps)
    elif name == "adamw":
        opt = optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    elif name == "adagrad":
        opt = optax.adagrad(lr)
    elif name == "rmsprop":
        opt = optax.rmsprop(lr, decay=b2, eps=eps)
    elif name == "momentum":
        opt = optax.sgd(lr, momentum=b1)
    else:
        opt = optax.sgd(lr)
    if grad_clip is not None:
        opt = optax.chain(optax.clip_by_global_norm(grad_clip), opt)
    return opt


def _check_range(name: str, value: float, expected: str, ok: Callable[[float], bool]) -> None:
    """Raises ValueError naming ``name`` unless ``value`` is a real number (not a bool)
    for which ``ok`` holds; NaN fails every comparison, so it never passes."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not ok(float(value)):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
