"""Inference-time search over the samplers: verifiers, a compute budget and four searches.

Ma et al. (2025, arXiv 2501.09732) scale a diffusion model's inference compute beyond
adding denoising steps by searching for better sampling noise with a verifier (a score of
one sample, ``genjax.samplers.verifiers``); Singhal et al. (2025, arXiv 2501.06848) steer
a population of particles with Feynman-Kac potentials built from a reward. This module
implements, for every registered sampler and any ``Denoiser`` (``guided(...)`` included):

* ``random_search``: the best of ``N`` initial noises (Ma et al. Sec. 3.2, "Random Search").
* ``zero_order_search``: ``R`` rounds of ``K`` neighbours of a pivot noise on the sphere
  of radius ``lambda`` around it (Ma et al. Sec. 3.2, "Zero-Order Search").
* ``path_search``: re-noise intermediate states and continue the best (Ma et al. Sec. 3.2,
  "Search over Paths").
* ``fk_steering``: Feynman-Kac steering, sequential Monte Carlo with potentials from the
  reward of each step's predicted ``x0`` (Singhal et al. Sec. 3, Algorithm 1).
* ``more_steps``: the baseline that spends the same budget on one sample with more steps.

The budget. In the spirit of the budget forcing of s1 (Muennighoff et al. 2025, arXiv
2501.19393), where a fixed number of thinking tokens is spent and no more, every search
runs under a ``Plan``: ``plan(method, budget, sampler, ...)`` splits a budget of network
function evaluations (NFE) per output sample between denoising steps per candidate and the
number of candidates, rounds or particles, and records the exact NFE it spends
(``Plan.nfe <= budget``; ``Plan.remainder`` is what is left). The searches return that
count in ``SearchResult.nfe``, which equals ``plan.nfe``.

How NFE is counted. One NFE is one call of the ``Denoiser`` for one example, as
``Sampler.num_evaluations`` counts them: ``steps`` per pass for DDPM, DDIM and
DPM-Solver++, ``2 steps - 1`` for Heun (``Sampler.evaluations_per_step`` gives the count
of each step, so a segment of a pass costs the sum over its rows). A classifier-free
guided denoiser (``guided``) runs the network once per call on the pair (condition,
null): one NFE is then one network call of batch two, i.e. two single-example forward
passes, as the sampler counts it. Verifier calls are not NFE (Ma et al. report the
verifier's cost separately).

Purity, batching and devices. Every search is a pure function of its key; the candidates
(noises, copies, particles) are one vmapped axis, the denoising steps run in
``jax.lax.scan`` (``base.run``/``base.run_rows``), and the rounds of the zero-order and
path searches are a ``jax.lax.scan`` too, so nothing loops in Python over candidates,
steps or rounds and compile time does not grow with them. With ``devices`` the candidate
axis is sharded over ``genjax.sharding.data_mesh(devices)`` with a ``NamedSharding``
(selections and resampling read replicated scores), and the results are those of one
device for the same key. One search draws one output; ``jax.vmap`` it over keys (and
conditions) for many.

Randomness. Candidate ``0`` uses the search's ``key`` exactly as ``sample`` does (so a
random search with ``N = 1`` is ``sample(..., key, ...)`` bit for bit); candidate ``j >= 1``
uses ``jax.random.fold_in(key, j + 2)``, and the search's own draws (neighbour
directions, re-noising, resampling) use ``jax.random.fold_in(key, 2)``. ``sample`` draws
only from ``split(key)``, whose two keys are ``fold_in(key, 0)`` and ``fold_in(key, 1)``,
so no stream is shared (``candidate_keys``).

Non-finite verifier scores. Every search records in ``SearchResult.finite`` whether all
scores it computed were finite. Called eagerly, a search raises at once (``ValueError``
naming ``verifier``); under ``jit`` the flag is part of the output and ``check_scores``
raises on the host after the call. No ``checkify``: one boolean per search.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jax.typing import ArrayLike

from genjax.samplers.base import (
    Denoiser,
    Sampler,
    abar_at,
    check_alphas_cumprod,
    check_steps,
    run,
    run_rows,
    schedule_table,
    split_key,
    table_rows,
)
from genjax.samplers.registry import as_sampler
from genjax.samplers.verifiers import Verifier, check_verifier
from genjax.sharding import DATA_AXIS, data_mesh

METHODS = ("random", "zero_order", "paths", "fk", "more_steps")
"""The searches a ``Plan`` can run (``more_steps`` is the no-search baseline)."""

POTENTIALS = ("max", "difference", "sum")
"""The Feynman-Kac potentials of Singhal et al. (2025, Sec. 3.2)."""

# The Plan fields that only some methods use, with their neutral values.
_OPTIONS = {"rounds": 1, "copies": 1, "renoise": 0, "advance": 0}
_METHOD_OPTIONS = {
    "random": (),
    "more_steps": (),
    "fk": (),
    "zero_order": ("rounds",),
    "paths": ("rounds", "copies", "renoise", "advance"),
}


# ------------------------------------------------------------------------------ checks


def _check_count(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def _check_method(method: object) -> str:
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    return str(method)


# -------------------------------------------------------------------------------- plan


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a search spends its network evaluations; frozen, hashable (a static argument).

    Build it with ``plan`` from a budget, or directly. ``nfe`` is computed from the other
    fields; it is what the search spends per output sample and what it returns as
    ``SearchResult.nfe``. With ``E = sampler.num_evaluations(steps)``:

    * ``"random"``: ``candidates`` noises, ``nfe = candidates * E``.
    * ``"more_steps"``: one sample, ``nfe = E``.
    * ``"zero_order"``: the pivot, then ``rounds`` rounds of ``candidates`` neighbours,
      ``nfe = (1 + rounds * candidates) * E``.
    * ``"fk"``: ``candidates`` particles, ``nfe = candidates * E``.
    * ``"paths"``: ``candidates`` noises run to the first search point, row ``start``;
      then ``rounds`` times each kept state spawns ``copies`` copies re-noised ``renoise``
      rows back, which run ``advance`` rows, and the best ``candidates`` are kept. The
      search points are ``start + j (advance - renoise)``, and the last round ends on the
      last row: ``start = steps - rounds (advance - renoise)``. ``nfe = candidates *
      (sum(e[:start]) + copies * sum_j sum(e[s_j : s_j + advance]))`` with ``e =
      sampler.evaluations_per_step(steps)`` and ``s_j`` the row each round restarts from.

    Attributes:
      method: one of ``METHODS``.
      sampler: the ``Sampler`` (a registry name is turned into its default object).
      steps: denoising steps of one pass.
      candidates: ``N`` noises (random, paths), ``K`` neighbours per round (zero-order) or
        ``K`` particles (fk); 1 for more_steps.
      rounds: zero-order rounds, or path-search rounds (1 for the other methods).
      copies: path search: re-noised copies of each kept state (``M`` of Ma et al.).
      renoise: path search: rows the forward process goes back (``Delta_f``), ``>= 1``.
      advance: path search: rows each copy then runs (``Delta_b``), ``> renoise``.
      budget: the budget it was planned for (``nfe`` when built directly).
      nfe: network evaluations per output sample (computed).

    Raises:
      ValueError: naming the offending field: an unknown method, a count that is not a
        positive int, an option the method does not use, a path layout that does not fit
        in ``steps``, or ``budget`` below ``nfe``.
    """

    method: str
    sampler: Sampler
    steps: int
    candidates: int = 1
    rounds: int = 1
    copies: int = 1
    renoise: int = 0
    advance: int = 0
    budget: int | None = None
    nfe: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        _check_method(self.method)
        object.__setattr__(self, "sampler", as_sampler(self.sampler))
        check_steps(self.steps)
        _check_count("candidates", self.candidates)
        if self.method == "more_steps" and self.candidates != 1:
            raise ValueError(f"candidates: more_steps draws one sample, expected 1, got {self.candidates!r}")
        for name, neutral in _OPTIONS.items():
            if name not in _METHOD_OPTIONS[self.method] and getattr(self, name) != neutral:
                raise ValueError(f"{name}: not an option of the {self.method!r} method (expected {neutral}), got {getattr(self, name)!r}")
        if self.method in ("zero_order", "paths"):
            _check_count("rounds", self.rounds)
        if self.method == "paths":
            _check_count("copies", self.copies)
            _check_count("renoise", self.renoise)
            _check_count("advance", self.advance, self.renoise + 1)
            needed = self.rounds * (self.advance - self.renoise) + self.renoise
            if self.steps < needed:
                raise ValueError(
                    f"steps: a path search with rounds={self.rounds}, renoise={self.renoise}, advance={self.advance} "
                    f"needs at least rounds * (advance - renoise) + renoise = {needed} steps, got {self.steps}"
                )
        object.__setattr__(self, "nfe", self._count())
        if self.budget is None:
            object.__setattr__(self, "budget", self.nfe)
        elif _check_count("budget", self.budget) < self.nfe:
            raise ValueError(f"budget: this plan spends {self.nfe} network evaluations, more than the budget {self.budget}")

    @property
    def remainder(self) -> int:
        """The part of the budget the plan leaves unspent, ``budget - nfe``."""
        return int(self.budget or 0) - self.nfe

    @property
    def start(self) -> int:
        """Path search: the row of the first search point, ``steps - rounds (advance - renoise)``."""
        return self.steps - self.rounds * (self.advance - self.renoise)

    def restarts(self) -> np.ndarray:
        """Path search: the row each round restarts from after re-noising, ``[rounds]``."""
        return self.start - self.renoise + np.arange(self.rounds) * (self.advance - self.renoise)

    def _count(self) -> int:
        e = self.sampler.evaluations_per_step(self.steps)
        full = int(e.sum())
        if self.method == "zero_order":
            return (1 + self.rounds * self.candidates) * full
        if self.method == "paths":
            rounds = sum(int(e[s : s + self.advance].sum()) for s in self.restarts())
            return self.candidates * (int(e[: self.start].sum()) + self.copies * rounds)
        return self.candidates * full


def plan(
    method: str,
    budget: int,
    sampler: Sampler | str,
    *,
    num_timesteps: int,
    steps: int | tuple[int, int] | None = None,
    neighbours: int | None = None,
    rounds: int | None = None,
    copies: int | None = None,
    renoise: int | None = None,
    advance: int | None = None,
) -> Plan:
    """Splits an NFE budget per output sample into steps and candidates; budget forcing.

    The budget of network evaluations is fixed ahead, as s1's budget forcing fixes the
    thinking tokens (Muennighoff et al. 2025, arXiv 2501.19393): the plan spends as much
    of it as the method's structure allows and never more. The method's structural
    options are fixed by the caller and the budget buys the axis Ma et al. scale:

    * ``"random"``, ``"fk"``: the number of noises / particles, ``budget // E``.
    * ``"zero_order"``: ``neighbours`` per round fixed (default 4); the budget buys rounds,
      ``(budget // E - 1) // neighbours``.
    * ``"paths"``: ``copies`` (2), ``renoise`` (1), ``advance`` (2) and ``rounds`` (1)
      fixed; the budget buys the number of noises kept.
    * ``"more_steps"``: no search; the most steps in ``[1, num_timesteps]`` whose single
      pass fits (``steps`` is not an option: the budget decides it).

    ``steps`` is the steps of one pass, or a range ``(lo, hi)``: the plan then takes the
    steps in the range that leaves the least of the budget unspent (ties: fewer steps,
    hence more candidates).

    Args:
      method: one of ``METHODS``.
      budget: network evaluations per output sample.
      sampler: a ``Sampler`` or a registry name.
      num_timesteps: ``T``, the model's discrete timesteps (``steps <= T``).
      steps: steps per pass, or an inclusive range ``(lo, hi)``; required except for
        ``"more_steps"``.
      neighbours: zero-order search: neighbours per round.
      rounds: path search: search rounds.
      copies: path search: re-noised copies per kept state.
      renoise: path search: rows the forward process goes back.
      advance: path search: rows run after each re-noising.

    Returns:
      The ``Plan`` with ``nfe <= budget`` and ``remainder = budget - nfe``.

    Raises:
      ValueError: naming ``budget`` (with the minimum it needs) when not even the smallest
        plan fits, or naming the offending argument: an unknown ``method``, an option the
        method does not take, a count that is not a positive int, ``steps`` outside
        ``[1, num_timesteps]``.
    """
    method = _check_method(method)
    budget = _check_count("budget", budget)
    num_timesteps = _check_count("num_timesteps", num_timesteps)
    sampler = as_sampler(sampler)
    given = {"neighbours": neighbours, "rounds": rounds, "copies": copies, "renoise": renoise, "advance": advance}
    allowed = {"zero_order": ("neighbours",), "paths": ("rounds", "copies", "renoise", "advance")}.get(method, ())
    for name, value in given.items():
        if value is not None and name not in allowed:
            raise ValueError(f"{name}: not an option of the {method!r} method, got {value!r}")
    if method == "more_steps":
        if steps is not None:
            raise ValueError(f"steps: more_steps chooses the steps from the budget; expected None, got {steps!r}")
        steps = (1, num_timesteps)
    if steps is None:
        raise ValueError(f"steps: the {method!r} method needs the steps of one pass (an int or a range (lo, hi)), got None")
    lo, hi = (steps, steps) if not isinstance(steps, tuple) else steps
    for value in (lo, hi):
        check_steps(value, num_timesteps)
    if lo > hi:
        raise ValueError(f"steps: expected a range (lo, hi) with lo <= hi, got {steps!r}")

    structure: dict[str, int] = {}
    if method == "zero_order":
        structure = {"candidates": _check_count("neighbours", 4 if neighbours is None else neighbours), "rounds": 1}
    if method == "paths":
        structure = {
            "rounds": _check_count("rounds", 1 if rounds is None else rounds),
            "copies": _check_count("copies", 2 if copies is None else copies),
            "renoise": _check_count("renoise", 1 if renoise is None else renoise),
            "advance": _check_count("advance", 2 if advance is None else advance),
        }
        if lo < hi:  # in a range, skip the steps too few for the path layout
            needed = structure["rounds"] * (structure["advance"] - structure["renoise"]) + structure["renoise"]
            lo = min(max(lo, needed), hi)

    fitting = [p for p in (_fill(Plan(method, sampler, s, **structure), budget) for s in range(lo, hi + 1)) if p is not None]
    if not fitting:
        minimum = Plan(method, sampler, lo, **structure).nfe  # the cheapest plan of the range
        what = "one pass" if method in ("random", "fk", "more_steps") else f"the smallest {method} plan"
        raise ValueError(f"budget: expected at least {minimum} network evaluations ({what} of {sampler!r} with steps={steps!r}), got {budget}")
    if method == "more_steps":
        return fitting[-1]  # the most steps that fit
    return min(fitting, key=lambda p: p.remainder)  # the first, fewest steps, among ties


def _fill(smallest: Plan, budget: int) -> Plan | None:
    """The plan of ``smallest``'s structure that buys the most of its scaled axis within
    ``budget`` (``None`` when even ``smallest`` does not fit)."""
    if smallest.nfe > budget:
        return None
    if smallest.method == "zero_order":
        rounds = (budget // smallest.sampler.num_evaluations(smallest.steps) - 1) // smallest.candidates
        return dataclasses.replace(smallest, rounds=rounds, budget=budget)
    if smallest.method == "more_steps":
        return dataclasses.replace(smallest, budget=budget)
    return dataclasses.replace(smallest, candidates=budget // smallest.nfe, budget=budget)


# ---------------------------------------------------------------------------- results


@struct.dataclass
class SearchResult:
    """What a search returns for one output sample (a pytree; ``nfe`` is static).

    Attributes:
      sample: the chosen sample, the sample's shape.
      score: its verifier score, a float32 scalar.
      samples: the final population ``[C, *shape]``: the ``N`` candidates (random), the
        pivot after each round ``[rounds + 1]`` (zero-order; the first is the initial
        pivot), the ``N`` kept paths (paths), the ``K`` particles (fk), the one sample
        (more_steps).
      scores: their verifier scores ``[C]``.
      candidate_scores: every score the search computed, by method: ``[N]`` (random),
        ``[1 + rounds * K]`` (zero-order: the initial pivot, then each round's
        neighbours), ``[rounds, N * copies]`` on the predicted ``x0`` at the end of each
        round (paths), ``[steps, K]`` on each step's predicted ``x0`` (fk), ``[1]``
        (more_steps).
      finite: whether every verifier score the search computed was finite.
      log_weights: fk only: the particles' normalised final importance log-weights, under
        which the particles target ``p(x) exp(lambda r(x))``; ``None`` otherwise.
      nfe: network evaluations spent on this output sample, ``plan.nfe``.
    """

    sample: jax.Array
    score: jax.Array
    samples: jax.Array
    scores: jax.Array
    candidate_scores: jax.Array
    finite: jax.Array
    log_weights: jax.Array | None = None
    nfe: int = struct.field(pytree_node=False, default=0)


def check_scores(result: SearchResult) -> SearchResult:
    """Raises on the host when a search met a non-finite verifier score; else returns it.

    The searches raise by themselves when called eagerly; under ``jit`` (or ``vmap``) call
    this on the output.

    Raises:
      ValueError: naming ``verifier`` when ``result.finite`` is false (for any output,
        when the result is batched).
    """
    if not bool(np.all(np.asarray(jax.device_get(result.finite)))):
        raise ValueError("verifier: returned a non-finite score (NaN or Inf) for a candidate; expected finite scores")
    return result


def _finish(result: SearchResult) -> SearchResult:
    if not isinstance(result.finite, jax.core.Tracer):
        check_scores(result)
    return result


# ------------------------------------------------------------------- shared machinery


def candidate_keys(key: jax.Array, num: int) -> jax.Array:
    """The keys of ``num`` candidates: ``key`` itself, then ``fold_in(key, j + 2)``.

    Candidate ``0`` draws exactly what ``sample(..., key, ...)`` draws, so one candidate is
    plain sampling; candidate ``j >= 1`` gets ``jax.random.fold_in(key, j + 2)``, disjoint
    from ``split(key)`` (``fold_in(key, 0)``, ``fold_in(key, 1)``) that candidate 0 uses
    and from ``fold_in(key, 2)``, the search's own stream (``search_key``).

    Args:
      key: the search's PRNG key.
      num: number of candidates, ``>= 1``.

    Returns:
      ``[num]`` keys.
    """
    _check_count("num", num)
    rest = jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.arange(3, num + 2, dtype=jnp.uint32))
    return jnp.concatenate([jnp.expand_dims(key, 0), rest])


def search_key(key: jax.Array) -> jax.Array:
    """The search's own stream (neighbours, re-noising, resampling): ``fold_in(key, 2)``."""
    return jax.random.fold_in(key, 2)


class _Layout:
    """Shards the candidate axis over a data mesh, or does nothing without devices."""

    def __init__(self, devices: Sequence[jax.Device] | None, counts: dict[str, int]) -> None:
        self.mesh: Mesh | None = None
        if devices is None:
            return
        self.mesh = data_mesh(tuple(devices))
        n_dev = self.mesh.devices.size
        for name, count in counts.items():
            if count % n_dev:
                raise ValueError(f"{name}: {count} candidates must be divisible by the device count {n_dev}")

    def split(self, tree: Any) -> Any:
        if self.mesh is None:
            return tree
        sharding = NamedSharding(self.mesh, P(DATA_AXIS))
        return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, sharding), tree)

    def replicate(self, tree: Any) -> Any:
        if self.mesh is None:
            return tree
        sharding = NamedSharding(self.mesh, P())
        return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, sharding), tree)


def _prepare(plan_: Plan, method: str, alphas_cumprod: ArrayLike, shape: Sequence[int], verifier: Verifier, condition: Any) -> tuple[Any, tuple[int, ...]]:
    if not isinstance(plan_, Plan):
        raise TypeError(f"plan: expected a genjax.samplers.search.Plan (see plan()), got {type(plan_).__name__}")
    if plan_.method != method:
        raise ValueError(f"plan: expected a plan for the {method!r} method, got one for {plan_.method!r}")
    table = check_alphas_cumprod(alphas_cumprod)
    check_steps(plan_.steps, table.shape[0])
    dims = tuple(int(d) for d in shape)
    check_verifier(verifier, jax.ShapeDtypeStruct(dims, jnp.float32), condition)
    return table, dims


def _scores(verifier: Verifier, xs: jax.Array, condition: Any) -> jax.Array:
    """The verifier on each candidate of ``xs [C, *shape]``: float32 ``[C]``."""
    return jax.vmap(lambda x: jnp.asarray(verifier(x, condition), jnp.float32))(xs)


def _take(tree: Any, index: jax.Array) -> Any:
    return jax.tree.map(lambda a: a[index], tree)


def _result(
    plan_: Plan,
    layout: _Layout,
    samples: jax.Array,
    scores: jax.Array,
    candidate_scores: jax.Array,
    log_weights: jax.Array | None = None,
) -> SearchResult:
    """The result: the best of the final population ``samples`` by ``scores``."""
    samples, scores = layout.replicate((samples, scores))
    best = jnp.argmax(scores)
    finite = jnp.all(jnp.isfinite(candidate_scores)) & jnp.all(jnp.isfinite(scores))
    chex.assert_rank(scores, 1)
    chex.assert_equal_shape_prefix([samples, scores], 1)
    return _finish(SearchResult(samples[best], scores[best], samples, scores, candidate_scores, finite, log_weights, plan_.nfe))


# ---------------------------------------------------------------------------- searches


def _best_of(
    method: str,
    key: jax.Array,
    denoiser: Denoiser,
    alphas_cumprod: ArrayLike,
    shape: Sequence[int],
    plan_: Plan,
    verifier: Verifier,
    condition: Any,
    devices: Sequence[jax.Device] | None,
) -> SearchResult:
    table, dims = _prepare(plan_, method, alphas_cumprod, shape, verifier, condition)
    layout = _Layout(devices, {"candidates": plan_.candidates})
    keys = layout.split(candidate_keys(key, plan_.candidates))
    samples = jax.vmap(lambda k: run(plan_.sampler, denoiser, table, k, dims, steps=plan_.steps))(keys)
    scores = _scores(verifier, layout.split(samples), condition)
    return _result(plan_, layout, samples, scores, scores)


def random_search(
    key: jax.Array,
    denoiser: Denoiser,
    alphas_cumprod: ArrayLike,
    shape: Sequence[int],
    *,
    plan: Plan,
    verifier: Verifier,
    condition: Any = None,
    devices: Sequence[jax.Device] | None = None,
) -> SearchResult:
    """Random search: the best of ``N`` initial noises (Ma et al. 2025, arXiv 2501.09732, Sec. 3.2).

    ``N = plan.candidates`` candidates (``candidate_keys``), each one full pass of
    ``plan.sampler`` with ``plan.steps`` steps, vmapped; the verifier scores each sample
    and the best is returned. Candidate 0 is ``sample(denoiser, alphas_cumprod, key,
    shape, sampler=plan.sampler, steps=plan.steps)``, so ``N = 1`` is plain sampling.
    NFE: ``N * sampler.num_evaluations(steps)``.

    Args:
      key: PRNG key of this output sample.
      denoiser: ``denoiser(x_t, t) -> Prediction`` for one example (``guided(...)`` for
        classifier-free guidance).
      alphas_cumprod: ``abar`` table ``[T]``.
      shape: shape of one sample.
      plan: a ``"random"`` ``Plan``.
      verifier: ``score(x, condition) -> scalar``; higher is better.
      condition: passed to the verifier (e.g. the class the sample is drawn for).
      devices: shard the candidates over ``data_mesh(devices)``; ``N`` must be divisible
        by their number.

    Returns:
      The ``SearchResult``; ``samples``/``scores`` are all ``N`` candidates.

    Raises:
      ValueError: naming ``plan``, ``verifier`` (shape; non-finite scores when eager),
        ``steps``, ``alphas_cumprod`` or ``candidates``.
    """
    return _best_of("random", key, denoiser, alphas_cumprod, shape, plan, verifier, condition, devices)


def more_steps(
    key: jax.Array,
    denoiser: Denoiser,
    alphas_cumprod: ArrayLike,
    shape: Sequence[int],
    *,
    plan: Plan,
    verifier: Verifier,
    condition: Any = None,
) -> SearchResult:
    """The no-search baseline: the budget spent on one sample with more denoising steps.

    ``sample(denoiser, alphas_cumprod, key, shape, sampler=plan.sampler,
    steps=plan.steps)`` for a ``"more_steps"`` plan, whose ``steps`` is the most that fit
    the budget (capped at ``T``: the gain from steps flattens, Ma et al. 2025 Fig. 1),
    scored by the verifier for comparison with the searches.

    Args:
      key: PRNG key.
      denoiser: ``denoiser(x_t, t) -> Prediction`` for one example.
      alphas_cumprod: ``abar`` table ``[T]``.
      shape: shape of one sample.
      plan: a ``"more_steps"`` ``Plan``.
      verifier: ``score(x, condition) -> scalar``.
      condition: passed to the verifier.

    Returns:
      The ``SearchResult`` of the one sample.
    """
    return _best_of("more_steps", key, denoiser, alphas_cumprod, shape, plan, verifier, condition, None)


def check_radius(radius: object) -> None:
    """Raises ValueError naming ``radius`` unless it is a real number in ``(0, inf)``.

    A traced radius is not checked.
    """
    if isinstance(radius, jax.core.Tracer):
        return
    ok = not isinstance(radius, bool) and isinstance(radius, (int, float, np.integer, np.floating)) and math.isfinite(radius) and radius > 0
    if not ok:
        raise ValueError(f"radius: expected a number in (0, inf), got {radius!r}")


def zero_order_search(
    key: jax.Array,
    denoiser: Denoiser,
    alphas_cumprod: ArrayLike,
    shape: Sequence[int],
    *,
    plan: Plan,
    verifier: Verifier,
    radius: float,
    renormalize: bool = True,
    condition: Any = None,
    devices: Sequence[jax.Device] | None = None,
) -> SearchResult:
    """Zero-order search around a pivot noise (Ma et al. 2025, arXiv 2501.09732, Sec. 3.2).

    The pivot ``n`` starts as the initial noise of ``sample(..., key, ...)`` and is
    scored. Each of ``R = plan.rounds`` rounds (one ``jax.lax.scan``) draws ``K =
    plan.candidates`` neighbours on the pivot's neighbourhood ``S_n^lambda = {y : ||y -
    n|| = lambda}``, ``y = n + radius u`` with ``u`` uniform on the unit sphere
    (normalised Gaussian directions), samples them all (vmapped) and moves the pivot to
    the best neighbour when it scores higher than the pivot; otherwise the pivot stays
    and the next round draws new neighbours. With ``renormalize`` each neighbour is
    rescaled to the pivot's norm ``||n||``, so every candidate keeps the norm of the
    initial Gaussian draw (in high dimension ``~ sqrt(d)``, the shell where ``N(0, I)``
    puts its mass and the model was trained): the search moves on that sphere, which
    is our reading of the paper's renormalisation of neighbour noises; without it the
    neighbours are the raw sphere points. For a stochastic sampler the per-step noise is
    held at the pivot's (``key``'s), so the search optimises one deterministic function
    of the initial noise. NFE: ``(1 + R K) * sampler.num_evaluations(steps)``.

    Args:
      key: PRNG key of this output sample.
      denoiser: ``denoiser(x_t, t) -> Prediction`` for one example.
      alphas_cumprod: ``abar`` table ``[T]``.
      shape: shape of one sample.
      plan: a ``"zero_order"`` ``Plan`` (``candidates`` neighbours, ``rounds`` rounds).
      verifier: ``score(x, condition) -> scalar``.
      radius: ``lambda``, the distance of the neighbours from the pivot, in ``(0, inf)``
        (in the noise's units: compare with ``sqrt(d)``, a Gaussian draw's norm).
      renormalize: rescale neighbours to the pivot's norm.
      condition: passed to the verifier.
      devices: shard the neighbours over ``data_mesh(devices)``.

    Returns:
      The ``SearchResult``: the final pivot's sample; ``samples`` the pivot's sample after
      each round.

    Raises:
      ValueError: naming ``radius`` outside ``(0, inf)``, or as ``random_search``.
    """
    check_radius(radius)
    table, dims = _prepare(plan, "zero_order", alphas_cumprod, shape, verifier, condition)
    layout = _Layout(devices, {"candidates": plan.candidates})
    sampler, steps, num = plan.sampler, plan.steps, plan.candidates
    pivot, _ = split_key(key, dims, steps, None)

    def sample_from(x_T: jax.Array) -> jax.Array:
        return run(sampler, denoiser, table, key, dims, steps=steps, x_T=x_T)

    def norm(x: jax.Array) -> jax.Array:
        return jnp.sqrt(jnp.sum(jnp.square(x), axis=tuple(range(1, x.ndim)), keepdims=True))

    first = sample_from(pivot)
    first_score = _scores(verifier, first[None], condition)[0]

    def round_(carry, round_key):
        pivot, best, best_score = carry
        directions = jax.random.normal(round_key, (num,) + dims, jnp.float32)
        neighbours = pivot[None] + radius * directions / norm(directions)
        if renormalize:
            neighbours = neighbours * (norm(pivot[None]) / norm(neighbours))
        neighbours = layout.split(neighbours)
        samples = layout.split(jax.vmap(sample_from)(neighbours))
        scores = layout.replicate(_scores(verifier, samples, condition))
        i = jnp.argmax(scores)
        better = scores[i] > best_score
        carry = (
            jnp.where(better, neighbours[i], pivot),
            jnp.where(better, samples[i], best),
            jnp.where(better, scores[i], best_score),
        )
        return carry, (scores, carry[1], carry[2])

    round_keys = jax.random.split(search_key(key), plan.rounds)
    _, (scores, pivots, pivot_scores) = jax.lax.scan(round_, (pivot, first, first_score), round_keys)
    samples = jnp.concatenate([first[None], pivots])
    pivot_scores = jnp.concatenate([first_score[None], pivot_scores])
    candidate_scores = jnp.concatenate([first_score[None], jnp.reshape(scores, (-1,))])
    return _result(plan, _Layout(None, {}), samples, pivot_scores, candidate_scores)


def visited_abar(sampler: Sampler, alphas_cumprod: ArrayLike, steps: int):
    """``abar`` at the time each of the ``steps`` rows evaluates the network, ``[steps]``.

    From ``sampler.timesteps`` (the linear interpolation of the table at non-integer
    times, ``abar_at``): the noise level of the state each row starts from. float64 numpy
    for a concrete table, float32 ``jnp`` for a traced one.
    """
    table = check_alphas_cumprod(alphas_cumprod)
    times = sampler.timesteps(steps, table.shape[0], table)[:steps]
    tab, xp = schedule_table(table)
    if xp is np:
        return np.interp(times, np.arange(tab.shape[0], dtype=np.float64), tab)
    return abar_at(tab, jnp.asarray(times, jnp.float32))


def path_search(
    key: jax.Array,
    denoiser: Denoiser,
    alphas_cumprod: ArrayLike,
    shape: Sequence[int],
    *,
    plan: Plan,
    verifier: Verifier,
    condition: Any = None,
    devices: Sequence[jax.Device] | None = None,
) -> SearchResult:
    """Search over paths (Ma et al. 2025, arXiv 2501.09732, Sec. 3.2).

    ``N = plan.candidates`` initial noises (``candidate_keys``) are sampled to the first
    search point, row ``plan.start`` of the step table. Each of ``plan.rounds`` rounds
    (one ``jax.lax.scan``) then: re-noises every kept state ``x_t`` into ``M =
    plan.copies`` copies by the forward process ``q(x_t' | x_t)`` from its noise level
    ``renoise`` rows back, ``x_t' = sqrt(abar_t' / abar_t) x_t + sqrt(1 - abar_t' /
    abar_t) z`` (DDPM scale; ``abar`` of each row from ``visited_abar``); restarts the
    sampler there with ``sampler.init`` of the remaining rows (a multistep solver such as
    DPM-Solver++ loses its history and takes a first-order step, as at the start; Heun
    converts the DDPM-scale state to its own); runs ``advance`` rows (vmapped over the
    ``N M`` copies, ``base.run_rows``); scores each copy's predicted ``x0`` of the last
    row run; keeps the best ``N``. The last round ends on the last row; the ``N`` final
    samples are scored and the best returned (Ma et al.'s final random search among the
    survivors). NFE per output sample, counted per row with
    ``sampler.evaluations_per_step``: see ``Plan``.

    Args:
      key: PRNG key of this output sample.
      denoiser: ``denoiser(x_t, t) -> Prediction`` for one example.
      alphas_cumprod: ``abar`` table ``[T]``.
      shape: shape of one sample.
      plan: a ``"paths"`` ``Plan``.
      verifier: ``score(x, condition) -> scalar``.
      condition: passed to the verifier.
      devices: shard the ``N`` paths and ``N M`` copies over ``data_mesh(devices)``.

    Returns:
      The ``SearchResult``; ``samples`` the ``N`` final paths.
    """
    table, dims = _prepare(plan, "paths", alphas_cumprod, shape, verifier, condition)
    layout = _Layout(devices, {"candidates": plan.candidates})
    sampler, steps, num, copies = plan.sampler, plan.steps, plan.candidates, plan.copies
    coefs = sampler.step_table(table, steps)
    abar = visited_abar(sampler, table, steps)
    restarts = plan.restarts()
    points = restarts + plan.renoise
    ratio = jnp.asarray(abar[restarts] / abar[points], jnp.float32)

    x_T, step_keys = jax.vmap(lambda k: split_key(k, dims, steps, None))(layout.split(candidate_keys(key, num)))
    states = jax.vmap(lambda x: sampler.init(coefs, x))(x_T)
    first_rows = table_rows(coefs, 0, plan.start)
    states, _ = jax.vmap(lambda s, k: run_rows(sampler, denoiser, first_rows, s, k[: plan.start]))(states, step_keys)

    def round_(kept, xs):
        point, restart, ratio_j, round_key = xs
        k_noise, k_steps = jax.random.split(round_key)
        here = table_rows(coefs, point, 1)
        x = jax.vmap(lambda s: sampler.x_t(here, s))(kept)
        z = jax.random.normal(k_noise, (num, copies) + dims, jnp.float32)
        noisy = jnp.sqrt(ratio_j) * x[:, None] + jnp.sqrt(1.0 - ratio_j) * z
        noisy = layout.split(jnp.reshape(noisy, (num * copies,) + dims))
        rows = table_rows(coefs, restart, plan.advance)
        states = jax.vmap(lambda x: sampler.init(rows, x))(noisy)
        keys = layout.split(jax.random.split(k_steps, (num * copies, plan.advance)))
        states, x0 = jax.vmap(lambda s, k: run_rows(sampler, denoiser, rows, s, k))(states, keys)
        scores = layout.replicate(_scores(verifier, layout.split(x0), condition))
        _, top = jax.lax.top_k(scores, num)
        return layout.split(_take(states, top)), scores

    xs = (jnp.asarray(points, jnp.int32), jnp.asarray(restarts, jnp.int32), ratio, jax.random.split(search_key(key), plan.rounds))
    kept, round_scores = jax.lax.scan(round_, states, xs)
    samples = layout.split(jax.vmap(sampler.result)(kept))
    scores = _scores(verifier, samples, condition)
    return _result(plan, layout, samples, scores, round_scores)


def systematic_resample(key: jax.Array, log_weights: jax.Array) -> jax.Array:
    """Systematic resampling (Kitagawa 1996): ``K`` ancestor indices from ``K`` log-weights.

    One uniform ``u ~ U[0, 1)`` places the points ``(u + k) / K``, ``k = 0..K-1``; particle
    ``i`` is chosen once for every point in ``[W_{i-1}, W_i)`` of the normalised cumulative
    weights. Each particle is chosen ``K w_i`` times in expectation (unbiased, as
    multinomial resampling) with less variance; equal weights give every particle once.

    Args:
      key: PRNG key.
      log_weights: ``[K]`` unnormalised log-weights.

    Returns:
      ``[K]`` int32 ancestor indices, in increasing order.
    """
    chex.assert_rank(log_weights, 1)
    num = log_weights.shape[0]
    cdf = jnp.cumsum(jax.nn.softmax(log_weights))
    points = (jax.random.uniform(key, (), jnp.float32) + jnp.arange(num, dtype=jnp.float32)) / num
    return jnp.minimum(jnp.searchsorted(cdf, points, side="right"), num - 1).astype(jnp.int32)


def check_potential(potential: object) -> None:
    """Raises ValueError naming ``potential`` unless it is one of ``POTENTIALS``."""
    if potential not in POTENTIALS:
        raise ValueError(f"potential: expected one of {POTENTIALS}, got {potential!r}")


def fk_steering(
    key: jax.Array,
    denoiser: Denoiser,
    alphas_cumprod: ArrayLike,
    shape: Sequence[int],
    *,
    plan: Plan,
    verifier: Verifier,
    lam: float | jax.Array = 1.0,
    potential: str = "max",
    resample_every: int = 1,
    condition: Any = None,
    devices: Sequence[jax.Device] | None = None,
) -> SearchResult:
    """Feynman-Kac steering (Singhal et al. 2025, arXiv 2501.06848, Algorithm 1): SMC with rewards.

    ``K = plan.candidates`` particles (``candidate_keys``: particle ``i`` starts from, and
    draws the step noise of, ``sample`` with its key) take the sampler's steps together
    (vmapped, one ``jax.lax.scan``). The proposal is the sampler's own step. After step
    ``i`` the reward ``r_i = verifier(x0_i)`` of the step's predicted ``x0`` gives the
    potential (Sec. 3.2; log form, ``lambda = lam``)::

        difference: log G_i = lam (r_i - r_{i-1})      (r_{-1} = 0)
        max:        log G_i = lam max_{s <= i} r_s
        sum:        log G_i = lam sum_{s <= i} r_s

    Each particle's weight accumulates ``log G_i`` since the last resampling, and its
    lineage accumulates ``L = sum_i log G_i`` (carried through resampling). After every
    ``resample_every`` steps (not after the last) the particles are resampled by their
    weights with ``systematic_resample`` (chosen over multinomial for its lower variance)
    and the weights reset. At the end the final potential ``log G_final = lam r(x) - L``
    with ``r(x)`` the verifier on the final sample makes the product of all potentials
    along every lineage ``exp(lam r(x))``, so the weighted particles target ``p(x)
    exp(lam r(x))`` for every choice of potential (Singhal et al. Sec. 3: the potentials'
    product must be the tilt, which the final step's potential guarantees). The rewards come from the ``x0`` each step already predicted for
    the state it started from, so the potentials lag one step and cost no extra network
    evaluation. With a constant verifier, or ``lam = 0``, every weight is equal, the
    resampling keeps every particle, and each particle is a plain sample. A
    deterministic sampler makes resampled duplicates identical; a stochastic one (DDPM,
    DDIM with ``eta > 0``) lets them diverge. NFE: ``K * sampler.num_evaluations(steps)``.

    Args:
      key: PRNG key of this output sample.
      denoiser: ``denoiser(x_t, t) -> Prediction`` for one example.
      alphas_cumprod: ``abar`` table ``[T]``.
      shape: shape of one sample.
      plan: an ``"fk"`` ``Plan``.
      verifier: the reward ``r``: ``score(x, condition) -> scalar``.
      lam: ``lambda``, the tilt of the target ``p(x) exp(lam r(x))`` (a float or a traced
        scalar).
      potential: one of ``POTENTIALS``.
      resample_every: resample after every this many steps (``>= 1``).
      condition: passed to the verifier.
      devices: shard the particles over ``data_mesh(devices)``.

    Returns:
      The ``SearchResult``: ``sample`` the particle with the highest final reward
      (Singhal et al.'s best-of-``K`` output), ``samples`` all ``K`` particles,
      ``log_weights`` their normalised final weights, ``candidate_scores [steps, K]`` the
      per-step rewards.

    Raises:
      ValueError: naming ``potential``, ``resample_every``, or as ``random_search``.
    """
    check_potential(potential)
    every = _check_count("resample_every", resample_every)
    table, dims = _prepare(plan, "fk", alphas_cumprod, shape, verifier, condition)
    layout = _Layout(devices, {"candidates": plan.candidates})
    sampler, steps, num = plan.sampler, plan.steps, plan.candidates
    lam = jnp.asarray(lam, jnp.float32)
    coefs = sampler.step_table(table, steps)

    x_T, step_keys = jax.vmap(lambda k: split_key(k, dims, steps, None))(layout.split(candidate_keys(key, num)))
    states = jax.vmap(lambda x: sampler.init(coefs, x))(x_T)
    flags = np.array([(i + 1) % every == 0 and i < steps - 1 for i in range(steps)])
    start = -jnp.inf if potential == "max" else 0.0
    zeros = jnp.zeros((num,), jnp.float32)
    carry = (states, zeros + start, zeros, zeros)

    def resample(args):
        carry, log_w, k = args
        ancestors = systematic_resample(k, layout.replicate(log_w))
        return layout.split(_take(carry, ancestors)), jnp.zeros_like(log_w)

    def step(loop, xs):
        (states, acc, lineage), log_w = loop
        row, keys, flag, k = xs
        states, x0 = jax.vmap(lambda s, key_i: sampler.step(row, denoiser, s, key_i))(states, keys)
        r = _scores(verifier, layout.split(x0), condition)
        if potential == "difference":
            log_g, acc = lam * (r - acc), r
        elif potential == "max":
            acc = jnp.maximum(acc, r)
            log_g = lam * acc
        else:
            acc = acc + r
            log_g = lam * acc
        particles, log_w = jax.lax.cond(flag, resample, lambda a: (a[0], a[1]), ((states, acc, lineage + log_g), log_w + log_g, k))
        return (particles, log_w), r

    xs = (coefs, jnp.swapaxes(step_keys, 0, 1), jnp.asarray(flags), jax.random.split(search_key(key), steps))
    ((states, _, lineage), log_w), rewards = jax.lax.scan(step, ((carry[0], carry[1], carry[2]), carry[3]), xs)
    samples = layout.split(jax.vmap(sampler.result)(states))
    final = _scores(verifier, samples, condition)
    log_w = log_w + lam * final - lineage
    log_w = log_w - jax.nn.logsumexp(layout.replicate(log_w))
    return _result(plan, layout, samples, final, rewards, layout.replicate(log_w))


def run_search(
    key: jax.Array,
    denoiser: Denoiser,
    alphas_cumprod: ArrayLike,
    shape: Sequence[int],
    *,
    plan: Plan,
    verifier: Verifier,
    condition: Any = None,
    devices: Sequence[jax.Device] | None = None,
    **options: Any,
) -> SearchResult:
    """Runs the search ``plan.method`` names: one entry point over the methods.

    Args:
      key: PRNG key of this output sample.
      denoiser: ``denoiser(x_t, t) -> Prediction`` for one example.
      alphas_cumprod: ``abar`` table ``[T]``.
      shape: shape of one sample.
      plan: the ``Plan``.
      verifier: ``score(x, condition) -> scalar``.
      condition: passed to the verifier.
      devices: shard the candidates over ``data_mesh(devices)`` (not for ``more_steps``).
      **options: the method's own options: ``radius``, ``renormalize`` (zero-order);
        ``lam``, ``potential``, ``resample_every`` (fk).

    Returns:
      The method's ``SearchResult``.

    Raises:
      ValueError: naming an option the method does not take, or as the method.
    """
    if not isinstance(plan, Plan):
        raise TypeError(f"plan: expected a genjax.samplers.search.Plan (see plan()), got {type(plan).__name__}")
    known = {"zero_order": ("radius", "renormalize"), "fk": ("lam", "potential", "resample_every")}.get(plan.method, ())
    for name in options:
        if name not in known:
            raise ValueError(f"{name}: not an option of the {plan.method!r} search; its options are {known}")
    common = {"plan": plan, "verifier": verifier, "condition": condition}
    if plan.method == "more_steps":
        if devices is not None:
            raise ValueError("devices: more_steps draws one sample, there is no candidate axis to shard; expected None")
        return more_steps(key, denoiser, alphas_cumprod, shape, **common)
    searches: dict[str, Callable[..., SearchResult]] = {
        "random": random_search,
        "zero_order": zero_order_search,
        "paths": path_search,
        "fk": fk_steering,
    }
    return searches[plan.method](key, denoiser, alphas_cumprod, shape, devices=devices, **common, **options)


__all__ = [
    "METHODS",
    "POTENTIALS",
    "Plan",
    "SearchResult",
    "candidate_keys",
    "check_potential",
    "check_radius",
    "check_scores",
    "fk_steering",
    "more_steps",
    "path_search",
    "plan",
    "random_search",
    "run_search",
    "search_key",
    "systematic_resample",
    "visited_abar",
    "zero_order_search",
]
