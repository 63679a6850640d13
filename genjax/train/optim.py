"""Optimisers and learning-rate schedules from explicit arguments."""

from __future__ import annotations

import optax

OPTIMIZERS = ("adam", "adamw", "adagrad", "sgd")


def make_optimizer(
    name: str = "adam",
    *,
    learning_rate: float,
    warmup_steps: int = 0,
    decay_steps: int = 0,
    grad_clip: float | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    """Builds an optax optimiser with optional linear warm-up, cosine decay and clipping.

    Args:
      name: one of ``OPTIMIZERS``.
      learning_rate: peak learning rate.
      warmup_steps: linear warm-up from 0 over this many steps.
      decay_steps: if positive, cosine decay to 0 over this many steps after warm-up.
      grad_clip: if set, clip gradients to this global norm first.
      b1: Adam's first-moment decay.
      b2: Adam's second-moment decay.
      eps: Adam's epsilon.
      weight_decay: AdamW's decoupled weight decay.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {name!r}")
    if learning_rate <= 0:
        raise ValueError(f"learning_rate: expected a positive float, got {learning_rate}")
    if warmup_steps < 0 or decay_steps < 0:
        raise ValueError(f"warmup_steps/decay_steps: expected non-negative ints, got {warmup_steps}, {decay_steps}")
    if decay_steps > 0:
        schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, warmup_steps + decay_steps)
    elif warmup_steps > 0:
        schedule = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    else:
        schedule = learning_rate
    if name == "adam":
        opt = optax.adam(schedule, b1=b1, b2=b2, eps=eps)
    elif name == "adamw":
        opt = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    elif name == "adagrad":
        opt = optax.adagrad(schedule)
    else:
        opt = optax.sgd(schedule)
    if grad_clip is not None:
        if grad_clip <= 0:
            raise ValueError(f"grad_clip: expected a positive float or None, got {grad_clip}")
        opt = optax.chain(optax.clip_by_global_norm(grad_clip), opt)
    return opt
