"""Diffusion samplers as pure functions of a single-example denoiser and the ``abar`` table.

``sample`` draws one example with ``"ddpm"`` (Ho et al. 2020, ancestral, respaced per
Nichol & Dhariwal 2021), ``"ddim"`` (Song et al. 2021), ``"dpmpp_2m"`` (Lu et al. 2022)
or ``"heun"`` (Karras et al. 2022); ``sample_batch`` vmaps it over split keys and
``build_sampler`` spreads it over devices (``"jit"`` mesh or ``"pmap"``). Every sampler
runs its steps in one ``jax.lax.scan``, so compile time does not grow with ``steps``.
The model enters only through ``denoiser(x_t, t) -> Prediction`` (see
``denoiser_from_apply`` for wrapping a batched network) and ``alphas_cumprod``.
"""

from genjax.samplers.api import (
    build_sampler,
    num_evaluations,
    sample,
    sample_batch,
    timesteps,
)
from genjax.samplers.base import (
    SAMPLERS,
    VARIANCES,
    Denoiser,
    Prediction,
    abar_at,
    denoiser_from_apply,
)
from genjax.samplers.ddpm import ddim_encode

__all__ = [
    "SAMPLERS",
    "VARIANCES",
    "Denoiser",
    "Prediction",
    "abar_at",
    "build_sampler",
    "ddim_encode",
    "denoiser_from_apply",
    "num_evaluations",
    "sample",
    "sample_batch",
    "timesteps",
]
