"""Likelihood bounds of diffusion models in bits per dimension.

The negative log-likelihood bound of a DDPM (Ho et al., arXiv 2006.11239 eq. 5) is
L_vlb = L_T + sum_{t=1}^{T-1} L_{t-1} + L_0, one term per timestep. ``vlb_terms``
computes every term of a batch of examples with one draw of x_t ~ q(x_t | x_0) per term,
evaluating the network on ``t_chunk`` timesteps of the whole batch at a time so that
memory stays bounded for T = 1000; ``bits_per_dim`` averages it over a test set.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from genjax.models.diffusion import (
    ApplyFn,
    Diffusion,
    Params,
    prior_kl,
    q_sample,
    vlb_term,
)


def vlb_terms(diffusion: Diffusion, apply_fn: ApplyFn, params: Params, x0: jax.Array, keys: jax.Array, *, t_chunk: int = 100) -> tuple[jax.Array, jax.Array]:
    """Every term of L_vlb (DDPM eq. 5) for a batch, in nats summed over dimensions.

    Term t uses its own draw x_t ~ q(x_t | x_0) from ``fold_in(keys[b], t)``, so the
    result does not depend on ``t_chunk``.

    Args:
      diffusion: the hyperparameters.
      apply_fn: the network (run without dropout).
      params: network parameters.
      x0: [B, H, W, C] examples in model scale.
      keys: [B] per-example keys.
      t_chunk: timesteps evaluated per network call (times B examples).

    Returns:
      ``(terms, prior)``: terms [B, T] (column t is L_{t-1} in the paper's numbering,
      column 0 the decoder NLL L_0) and prior [B] (L_T).
    """
    chex.assert_rank(x0, 4)
    chex.assert_equal_shape_prefix([x0, keys], 1)
    if isinstance(t_chunk, bool) or not isinstance(t_chunk, int) or t_chunk < 1:
        raise ValueError(f"t_chunk: expected a positive int, got {t_chunk!r}")
    s = diffusion.schedule
    num_t = s.num_timesteps
    chunk = min(t_chunk, num_t)
    num_chunks = -(-num_t // chunk)
    b = x0.shape[0]

    def one_chunk(c: jax.Array) -> jax.Array:
        ts = jnp.minimum(c * chunk + jnp.arange(chunk), num_t - 1)
        noise = jax.vmap(lambda k: jax.vmap(lambda t: jax.random.normal(jax.random.fold_in(k, t), x0.shape[1:], jnp.float32))(ts))(keys)
        xt = jax.vmap(lambda x, n: jax.vmap(lambda ni, t: q_sample(s, x, t, ni))(n, ts))(x0, noise)
        flat_t = jnp.tile(ts, b)
        out = apply_fn(params, xt.reshape((b * chunk,) + x0.shape[1:]), flat_t, None).astype(jnp.float32)
        out = out.reshape((b, chunk) + out.shape[1:])
        return jax.vmap(lambda o, x, xts: jax.vmap(lambda oi, xi, t: vlb_term(diffusion, oi, x, xi, t))(o, xts, ts))(out, x0, xt)

    terms = jax.lax.map(one_chunk, jnp.arange(num_chunks))  # [chunks, B, chunk]
    terms = jnp.moveaxis(terms, 0, 1).reshape((b, num_chunks * chunk))[:, :num_t]
    return terms, jax.vmap(lambda x: prior_kl(s, x))(x0)


@dataclasses.dataclass(frozen=True)
class BitsPerDim:
    """A test-set likelihood bound.

    Attributes:
      mean: mean bound in bits per dimension (L_vlb / (D ln 2)).
      stderr: its standard error over examples.
      num_examples: examples averaged.
      terms_bpd: [T] mean of each term L_{t-1}, in bits per dimension.
      prior_bpd: mean L_T in bits per dimension.
    """

    mean: float
    stderr: float
    num_examples: int
    terms_bpd: np.ndarray
    prior_bpd: float


def bits_per_dim(
    diffusion: Diffusion,
    apply_fn: ApplyFn,
    params: Params,
    images: np.ndarray,
    key: jax.Array,
    *,
    batch_size: int = 16,
    t_chunk: int = 100,
    progress: bool | None = None,
) -> BitsPerDim:
    """The L_vlb bound on the NLL of ``images`` in bits/dim, from all T terms (DDPM Table 2).

    Args:
      diffusion: the hyperparameters.
      apply_fn: the network.
      params: network parameters.
      images: [N, H, W, C] in model scale, on the 256 levels.
      key: base key; example i uses ``fold_in(key, i)``.
      batch_size: examples per jitted call.
      t_chunk: timesteps per network call (see ``vlb_terms``).
      progress: show a progress bar; None shows one only on a terminal.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images: expected a non-empty [N, H, W, C] array, got shape {images.shape}")
    if images.min() < -1.0 or images.max() > 1.0:
        raise ValueError(f"images: expected model scale [-1, 1] (see genjax.models.diffusion.to_model_scale), got [{images.min()}, {images.max()}]")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size}")
    fn = _compiled_terms(diffusion, apply_fn, t_chunk)
    dims = math.prod(images.shape[1:])
    totals, term_sums, prior_sum = [], 0.0, 0.0
    n = images.shape[0]
    disable = None if progress is None else not progress
    for start in tqdm(range(0, n, batch_size), desc="bits/dim", disable=disable, leave=False):
        chunk = images[start : start + batch_size]
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(start, start + chunk.shape[0]))
        terms, prior = jax.device_get(fn(params, jnp.asarray(chunk), keys))
        terms, prior = np.asarray(terms, np.float64), np.asarray(prior, np.float64)
        totals.append((terms.sum(axis=1) + prior) / (dims * math.log(2.0)))
        term_sums = term_sums + terms.sum(axis=0)
        prior_sum += prior.sum()
    values = np.concatenate(totals)
    stderr = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return BitsPerDim(
        mean=float(values.mean()),
        stderr=stderr,
        num_examples=n,
        terms_bpd=np.asarray(term_sums) / (n * dims * math.log(2.0)),
        prior_bpd=float(prior_sum / (n * dims * math.log(2.0))),
    )


_CACHE: dict[tuple[int, int, int], tuple[Diffusion, ApplyFn, Callable[..., tuple[jax.Array, jax.Array]]]] = {}


def _compiled_terms(diffusion: Diffusion, apply_fn: ApplyFn, t_chunk: int) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """One jitted ``vlb_terms`` per (diffusion, network, chunk), reused across calls."""
    cache_key = (id(diffusion), id(apply_fn), t_chunk)
    hit = _CACHE.get(cache_key)
    # The cached objects are kept alive with the entry, so an id cannot be reused by
    # another object while its entry exists; the identity check is a second guard.
    if hit is None or hit[0] is not diffusion or hit[1] is not apply_fn:
        fn = jax.jit(lambda p, x, k: vlb_terms(diffusion, apply_fn, p, x, k, t_chunk=t_chunk))
        hit = _CACHE[cache_key] = (diffusion, apply_fn, fn)
    return hit[2]
