"""Verifiers: the scores an inference-time search maximises (Ma et al. 2025, arXiv 2501.09732).

A verifier is any plain function ``score(x, condition) -> scalar`` of ONE sample ``x``
(the sample's shape, no batch axis, in the model scale the samplers return) and the
condition the sample was drawn for (``None`` when unconditional); the searches of
``genjax.samplers.search`` vmap it over their candidates. Higher is better. Ma et al.
(Sec. 3.1) call such functions verifiers; Singhal et al. (2025, arXiv 2501.06848) call the
same thing a reward ``r(x)`` and tilt the model towards ``p(x) exp(lambda r(x))``.

Two constructors cover the common cases: ``classifier_verifier`` (the log-probability a
classifier gives the intended class, Ma et al.'s "oracle"-style class verifier for
class-conditional models) and ``log_density_verifier`` (a known density, for toy data).
``check_verifier`` is the shape check the searches run on every verifier.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Verifier = Callable[[jax.Array, Any], jax.Array]
"""``score(x, condition) -> scalar`` for one sample; higher is better."""


def classifier_verifier(
    apply_fn: Callable[[jax.Array], jax.Array],
    *,
    sample_range: tuple[float, float] = (-1.0, 1.0),
    classifier_range: tuple[float, float] = (0.0, 1.0),
) -> Verifier:
    """``log p(condition | x)`` under a classifier: the class verifier.

    The sample is mapped affinely from the samplers' model scale ``sample_range`` to the
    pixel range the classifier was trained on, ``classifier_range``, and clipped to it
    (a sampler without ``clip_x0`` can overshoot a little), then
    ``score = log_softmax(apply_fn(pixels[None])[0])[condition]``. The defaults map the
    model scale ``[-1, 1]`` of ``genjax.models.diffusion.to_model_scale`` to the ``[0, 1]``
    pixels of the shipped MNIST classifier, ``pixels = (x + 1) / 2``::

        params = genjax.metrics.load_mnist_classifier()
        verifier = classifier_verifier(lambda images: MNISTClassifier().apply(params, images)[0])

    (``MNISTClassifier`` returns ``(logits, features)``; the verifier wants the logits).

    Args:
      apply_fn: ``apply_fn(images [B, *shape]) -> logits [B, num_classes]`` for images in
        ``classifier_range``.
      sample_range: ``(lo, hi)`` of the samples, the model scale.
      classifier_range: ``(lo, hi)`` of the classifier's inputs.

    Returns:
      ``score(x, label) -> log p(label | x)``, a float32 scalar ``<= 0``; ``label`` is an
      integer class (a scalar).

    Raises:
      ValueError: naming ``sample_range`` or ``classifier_range`` when not ``lo < hi``.
    """
    for name, (lo, hi) in (("sample_range", sample_range), ("classifier_range", classifier_range)):
        if not lo < hi:
            raise ValueError(f"{name}: expected (lo, hi) with lo < hi, got {(lo, hi)!r}")
    scale = (classifier_range[1] - classifier_range[0]) / (sample_range[1] - sample_range[0])

    def score(x: jax.Array, condition: Any) -> jax.Array:
        pixels = classifier_range[0] + (jnp.asarray(x, jnp.float32) - sample_range[0]) * scale
        pixels = jnp.clip(pixels, classifier_range[0], classifier_range[1])
        logits = jnp.asarray(apply_fn(pixels[None]), jnp.float32)
        if logits.ndim != 2 or logits.shape[0] != 1:
            raise ValueError(f"apply_fn: expected logits [1, num_classes] for one image, got shape {logits.shape}")
        label = jnp.asarray(condition, jnp.int32)
        if label.ndim != 0:
            raise ValueError(f"condition: expected one integer class label (a scalar), got shape {label.shape}")
        return jax.nn.log_softmax(logits[0])[label]

    return score


def log_density_verifier(log_density: Callable[[jax.Array], jax.Array]) -> Verifier:
    """A known log-density as a verifier: ``score(x, condition) = log_density(x)``.

    For toy data with a closed-form density (a mixture of Gaussians, one of its modes, a
    tilted target): searching with it moves samples towards the density's high-probability
    region. The condition is ignored.

    Args:
      log_density: ``log_density(x) -> scalar`` for one sample.

    Returns:
      The verifier.
    """

    def score(x: jax.Array, condition: Any) -> jax.Array:
        del condition
        return jnp.asarray(log_density(x), jnp.float32)

    return score


def check_verifier(verifier: Verifier, x: jax.Array | jax.ShapeDtypeStruct, condition: Any = None) -> None:
    """Checks that ``verifier`` gives one real scalar for one sample, without running it.

    Args:
      verifier: the verifier.
      x: one sample (or a ``jax.ShapeDtypeStruct`` of one).
      condition: the condition passed with it.

    Raises:
      ValueError: naming ``verifier`` with the expected shape ``()`` and the given one, or
        when the score is not a real number.
    """
    out = jax.eval_shape(verifier, x, condition)
    shape = getattr(out, "shape", None)
    if shape != ():
        raise ValueError(f"verifier: expected one scalar score per example, shape (), got {shape if shape is not None else type(out).__name__}")
    if not (jnp.issubdtype(out.dtype, jnp.floating) or jnp.issubdtype(out.dtype, jnp.integer)):
        raise ValueError(f"verifier: expected a real-valued score, got dtype {out.dtype}")


__all__ = ["Verifier", "check_verifier", "classifier_verifier", "log_density_verifier"]
