"""Diffusion samplers as pure functions of a single-example denoiser and the ``abar`` table.

Each sampler is a frozen dataclass carrying its own options - ``DDPM(variance, clip_x0)``
(Ho et al. 2020, ancestral, respaced per Nichol & Dhariwal 2021), ``DDIM(eta, clip_x0)``
(Song et al. 2021), ``DPMpp2M(clip_x0)`` (Lu et al. 2022) and ``Heun(sigma_min, sigma_max,
rho, clip_x0)`` (Karras et al. 2022) - registered by name in ``SAMPLERS``
(``get_sampler("ddim", eta=0.5)``). ``sample`` draws one example with it, ``sample_batch``
vmaps that over split keys and ``build_sampler`` spreads it over devices (``"jit"`` mesh
or ``"pmap"``). Every sampler runs its steps in the one ``jax.lax.scan`` of ``base.run``,
so compile time does not grow with ``steps``; its public ``step(row, denoiser, state,
key)`` over its ``step_table`` rows (``table_row``) builds a custom loop. The model enters
only through ``denoiser(x_t, t) -> Prediction`` (see ``Denoiser``, and
``denoiser_from_apply`` for wrapping a batched network) and ``alphas_cumprod``.
Classifier-free guidance (``guided``) turns a conditional denoiser into such a
``Denoiser``, so every sampler samples with guidance.

Inference-time search (``genjax.samplers.search``, Ma et al. 2025; Singhal et al. 2025)
spends a budget of network evaluations (``plan``) on ``random_search``,
``zero_order_search``, ``path_search`` or ``fk_steering`` over any sampler and denoiser,
guided ones included, scored by a verifier (``genjax.samplers.verifiers``).
"""

from genjax.samplers.api import (
    build_sampler,
    num_evaluations,
    sample,
    sample_batch,
    timesteps,
)
from genjax.samplers.base import (
    VARIANCES,
    Denoiser,
    Prediction,
    Sampler,
    abar_at,
    denoiser_from_apply,
    table_row,
)
from genjax.samplers.ddim import DDIM, DDIMStepTable, ddim_encode, ddim_update
from genjax.samplers.ddpm import DDPM, DDPMStepTable, ddpm_update
from genjax.samplers.dpmpp import DPMpp2M, DPMppStepTable
from genjax.samplers.gaussian_mixture import GaussianMixture, gaussian_log_reward
from genjax.samplers.guidance import ConditionalDenoiser, check_guidance, guided
from genjax.samplers.heun import Heun, HeunStepTable
from genjax.samplers.registry import SAMPLERS, get_sampler
from genjax.samplers.search import (
    METHODS,
    POTENTIALS,
    Plan,
    SearchResult,
    check_scores,
    fk_steering,
    more_steps,
    path_search,
    plan,
    random_search,
    run_search,
    zero_order_search,
)
from genjax.samplers.verifiers import Verifier, check_verifier, classifier_verifier, log_density_verifier

__all__ = [
    "DDIM",
    "DDPM",
    "METHODS",
    "POTENTIALS",
    "SAMPLERS",
    "VARIANCES",
    "ConditionalDenoiser",
    "DDIMStepTable",
    "DDPMStepTable",
    "DPMpp2M",
    "DPMppStepTable",
    "Denoiser",
    "GaussianMixture",
    "Heun",
    "HeunStepTable",
    "Plan",
    "Prediction",
    "Sampler",
    "SearchResult",
    "Verifier",
    "abar_at",
    "build_sampler",
    "check_guidance",
    "check_scores",
    "check_verifier",
    "classifier_verifier",
    "ddim_encode",
    "ddim_update",
    "ddpm_update",
    "denoiser_from_apply",
    "fk_steering",
    "gaussian_log_reward",
    "get_sampler",
    "guided",
    "log_density_verifier",
    "more_steps",
    "num_evaluations",
    "path_search",
    "plan",
    "random_search",
    "run_search",
    "sample",
    "sample_batch",
    "table_row",
    "timesteps",
    "zero_order_search",
]
