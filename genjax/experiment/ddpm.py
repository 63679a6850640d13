"""The DDPM family (``model.family = "ddpm"``): Ho, Jain & Abbeel, arXiv 2006.11239."""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax import samplers as samplers_lib
from genjax import viz
from genjax.data import map_batches
from genjax.experiment.base import Experiment, check_common, load_split, loss_update, train_batcher
from genjax.experiment.base import image_shape as shape_of_images
from genjax.experiment.config import base_config
from genjax.metrics import bits_per_dim
from genjax.models import diffusion as diff
from genjax.nn.module import array_apply
from genjax.nn.sd import LabelContextUNet, UNet2DConditionModel, sd15_unet, sd_unet_tiny
from genjax.nn.unet import UNet
from genjax.types import Params

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class Codec:
    """The space a diffusion model runs in, when it is not the images themselves.

    Latent diffusion (Rombach et al. 2022, arXiv 2112.10752, sec. 3.2) trains the DDPM on
    ``encode(x)`` and decodes its samples with ``decode``; pixel-space DDPM has no codec.

    Attributes:
      shape: the (height, width, channels) of one encoded example.
      encode: ``encode(x [B, H, W, C] in model scale, keys [B]) -> z [B, *shape]``, pure
        and traceable (it runs inside the compiled training step).
      decode: ``decode(z [B, *shape]) -> x`` in model scale, jitted.
      info: what the evaluation reports about the codec (e.g. the latent scale factor).
    """

    shape: tuple[int, int, int]
    encode: Callable[[jax.Array, jax.Array], jax.Array]
    decode: Callable[[jax.Array], jax.Array]
    info: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class DDPMModel:
    """The network and process of a DDPM experiment (``Experiment.model``).

    Attributes:
      unet: the noise-prediction network (``model.network``: the DDPM UNet or a
        label-conditioned Stable Diffusion U-Net).
      diffusion: the forward process and loss hyperparameters.
      apply: ``apply(params, x, t, dropout_key)``, the UNet with dropout on exactly when
        a key is given (see ``unet_apply``).
      image_shape: the (height, width, channels) the diffusion runs on: one image, or
        one latent under a ``codec``.
      codec: the autoencoder of a latent diffusion model, or None in pixel space.
    """

    unet: nn.Module
    diffusion: diff.Diffusion
    apply: diff.ApplyFn
    image_shape: tuple[int, int, int]
    codec: Codec | None = None


def default_config() -> ml_collections.ConfigDict:
    """``base_config()`` with the fields of the DDPM family at the paper's CIFAR-10 values.

    Ho et al., arXiv 2006.11239 sec. 4 and Appendix B: T = 1000, betas linear from 1e-4
    to 0.02, eps prediction with the fixed variance beta_tilde and L_simple; the 35.7M
    UNet (ch 128, multipliers 1,2,2,2, 2 res blocks, attention at 16x16, dropout 0.1);
    Adam at 2e-4 with 5000 warm-up steps, gradient clipping at 1, EMA 0.9999, batch 128,
    random flips, 800k steps. ``eval`` adds the sampler for samples and figures and the
    size of the bits/dim evaluation, whose cost is T network evaluations per image.

    ``model.num_classes = K > 0`` makes the model class-conditional for classifier-free
    guidance (Ho & Salimans 2022, arXiv 2207.12598): the UNet embeds ``K + 1`` labels, the
    last (``K``) being the learned null condition, labels are dropped to it with
    probability ``model.cond_drop_prob`` while training, and samples use the guidance
    scale ``eval.guidance`` (0: the conditional model), applied only at timesteps in
    ``eval.guidance_interval = (t_lo, t_hi)`` when it is given (empty: at every step;
    Kynkaanniemi et al. 2024, arXiv 2404.07724, guide in a limited interval).

    ``model.network`` is ``"unet"`` (the DDPM U-Net above, sized by ``model.ch``,
    ``ch_mult``, ``num_res_blocks``, ``attn_resolutions`` and ``num_groups``) or the name
    of a Stable Diffusion U-Net preset in :data:`SD_NETWORKS` (``"sd15_unet"``: Stable
    Diffusion v1.5's 859.5M-parameter denoiser; ``"sd_unet_tiny"``), conditioned on the
    label through cross-attention (:class:`genjax.nn.sd.LabelContextUNet`) with its
    channels set by the data and ``model.dropout`` applied.
    """
    c = base_config()
    c.model = ml_collections.ConfigDict()
    c.model.family = "ddpm"
    c.model.network = "unet"
    c.model.ch = 128
    c.model.ch_mult = (1, 2, 2, 2)
    c.model.num_res_blocks = 2
    c.model.attn_resolutions = (16,)
    c.model.dropout = 0.1
    c.model.num_groups = 32
    c.model.dtype = "float32"
    c.model.schedule = "linear"
    c.model.num_timesteps = 1000
    c.model.beta_start = 1e-4
    c.model.beta_end = 0.02
    c.model.parameterization = "eps"
    c.model.variance = "small"
    c.model.loss = "simple"
    c.model.vlb_weight = 0.001
    c.model.clip_x0 = True
    c.model.num_classes = 0
    c.model.cond_drop_prob = 0.1

    c.data.name = "cifar10"
    c.data.source = "tfds"
    c.data.image_shape = (32, 32, 3)
    c.data.binarize = "none"
    c.data.random_flip = True

    c.train.num_steps = 800_000
    c.train.batch_size = 128
    c.train.learning_rate = 2e-4
    c.train.warmup_steps = 5000
    c.train.grad_clip = 1.0
    c.train.ema_decay = 0.9999
    c.train.log_every = 100
    c.train.checkpoint_every = 10_000

    c.eval.batch_size = 100
    c.eval.num_grid = 64
    c.eval.sampler = "ddpm"
    c.eval.sampler_steps = 1000
    c.eval.eta = 0.0
    c.eval.guidance = 0.0
    c.eval.guidance_interval = ()
    c.eval.bpd_examples = 1000
    c.eval.bpd_batch = 8
    c.eval.t_chunk = 100
    c.eval.progressive_frames = 10
    c.eval.progressive_rows = 8
    return c


#: The Stable Diffusion U-Net presets ``model.network`` may name (:mod:`genjax.nn.sd`).
SD_NETWORKS: dict[str, Callable[..., UNet2DConditionModel]] = {"sd15_unet": sd15_unet, "sd_unet_tiny": sd_unet_tiny}


def build_unet(config: ml_collections.ConfigDict, channels: int, diffusion: diff.Diffusion) -> nn.Module:
    """The denoiser a DDPM config describes: ``model.network`` with its fields.

    Both networks take ``(x, t, y=None, *, train)``; ``y`` indexes ``num_classes + 1``
    labels (the last is the null label) when ``model.num_classes > 0``.
    """
    m = config.model
    if m.dtype not in DTYPES:
        raise ValueError(f"model.dtype: expected one of {sorted(DTYPES)}, got {m.dtype!r}")
    num_labels = m.num_classes + 1 if m.num_classes else 0
    if m.network in SD_NETWORKS:
        h, w, _ = shape_of_images(config)
        unet = SD_NETWORKS[m.network](
            sample_size=h if h == w else None,
            in_channels=channels,
            out_channels=diffusion.output_channels(channels),
            dropout=m.dropout,
            dtype=DTYPES[m.dtype],
        )
        return LabelContextUNet(unet=unet, num_labels=max(num_labels, 1))
    if m.network != "unet":
        raise ValueError(f"model.network: expected 'unet' or one of {sorted(SD_NETWORKS)}, got {m.network!r}")
    return UNet(
        out_channels=diffusion.output_channels(channels),
        ch=m.ch,
        ch_mult=tuple(m.ch_mult),
        num_res_blocks=m.num_res_blocks,
        attn_resolutions=tuple(m.attn_resolutions),
        dropout=m.dropout,
        num_groups=m.num_groups,
        num_classes=num_labels,
        dtype=DTYPES[m.dtype],
    )


def build_diffusion(config: ml_collections.ConfigDict) -> diff.Diffusion:
    """The process and loss hyperparameters of a DDPM config."""
    m = config.model
    betas = diff.beta_schedule(m.schedule, m.num_timesteps, beta_start=m.beta_start, beta_end=m.beta_end)
    return diff.Diffusion(
        schedule=diff.make_schedule(betas),
        parameterization=m.parameterization,
        variance=m.variance,
        loss=m.loss,
        vlb_weight=m.vlb_weight,
        clip_x0=m.clip_x0,
    )


def unet_apply(unet: nn.Module) -> diff.ApplyFn:
    """``apply(params, x, t, dropout_key, y=None)``: dropout is on exactly when a key is
    given; ``y`` are the class labels of a conditional UNet."""

    def apply(params: Params, x: jax.Array, t: jax.Array, dropout_key: jax.Array | None, y: jax.Array | None = None) -> jax.Array:
        if dropout_key is None:
            return array_apply(unet)(params, x, t, y, train=False)
        return array_apply(unet)(params, x, t, y, train=True, rngs={"dropout": dropout_key})

    return apply


def flip_transform(batch: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random horizontal flips, each image with probability 1/2 (DDPM sec. 4 on CIFAR-10)."""
    images = batch["image"]
    flip = rng.random((images.shape[0],)) < 0.5
    return {**batch, "image": np.where(flip[:, None, None, None], images[:, :, ::-1, :], images)}


def sampler_options(diffusion: diff.Diffusion, sampler: str, eta: float) -> dict[str, Any]:
    """The options of the registry's ``sampler`` that a trained model (and ``eval.eta``) fixes.

    ``genjax.samplers.get_sampler(sampler, **sampler_options(...))`` builds the sampler.
    """
    kwargs: dict[str, Any] = {}
    if sampler == "ddim":
        kwargs["eta"] = eta
    if sampler in ("ddpm", "ddim"):
        kwargs["clip_x0"] = diffusion.clip_x0
    if sampler == "ddpm":
        kwargs["variance"] = diffusion.variance
    return kwargs


def denoiser_of(diffusion: diff.Diffusion, apply_fn: diff.ApplyFn) -> Callable[[Params], samplers_lib.Denoiser]:
    """``params -> denoiser`` for the samplers: the network without dropout, outputs as eps."""

    def make(params: Params) -> samplers_lib.Denoiser:
        return samplers_lib.denoiser_from_apply(
            lambda x, t: apply_fn(params, x, t, None),
            parameterization=diffusion.parameterization,
            learned_variance=diffusion.learned_variance,
            alphas_cumprod=diffusion.schedule.alphas_cumprod,
        )

    return make


def guided_denoiser_of(
    diffusion: diff.Diffusion, apply_fn: diff.ApplyFn, null_label: int, interval: tuple[float, float] | None = None
) -> Callable[[Params, dict[str, jax.Array]], samplers_lib.Denoiser]:
    """``(params, condition) -> denoiser`` of a class-conditional network, guided.

    ``condition`` holds one sample's ``"label"`` (int32 scalar) and, to guide, its
    ``"guidance"`` scale (float32 scalar): classifier-free guidance
    (``genjax.samplers.guided``) between that label and ``null_label``, both evaluated in
    one network call. The scale is data, so one compiled sampler serves every nonzero
    scale; without it the denoiser is the conditional network alone (``w = 0`` exactly).
    ``interval``: guide only at model times in ``[t_lo, t_hi]``.
    """

    def make(params: Params, condition: dict[str, jax.Array]) -> samplers_lib.Denoiser:
        def conditional(x_t: jax.Array, t: jax.Array, label: Any) -> samplers_lib.Prediction:
            net = samplers_lib.denoiser_from_apply(
                lambda xb, tb: apply_fn(params, xb, tb, None, y=jnp.broadcast_to(label, tb.shape)),
                parameterization=diffusion.parameterization,
                learned_variance=diffusion.learned_variance,
                alphas_cumprod=diffusion.schedule.alphas_cumprod,
            )
            return net(x_t, t)

        null = jnp.asarray(null_label, jnp.int32)
        if "guidance" not in condition:
            return samplers_lib.guided(conditional, condition["label"], null, 0.0)
        return samplers_lib.guided(conditional, condition["label"], null, condition["guidance"], interval=interval)

    return make


def make_sample_fn(
    config: ml_collections.ConfigDict,
    diffusion: diff.Diffusion,
    apply_fn: diff.ApplyFn,
    image_shape: tuple[int, int, int],
    *,
    sampler: str,
    steps: int,
    eta: float = 0.0,
    devices: list[jax.Device] | None = None,
    null_label: int | None = None,
    guidance_interval: tuple[float, float] | None = None,
) -> Callable[..., jax.Array]:
    """A compiled sampler of the model: ``fn(params, key, num) -> [num, H, W, C]`` in [-1, 1].

    It runs on the config's parallel back end; ``num`` is padded up to a multiple of the
    device count and the extra samples dropped (they come from the keys after the
    first ``num``, so the samples kept do not depend on the device count). With
    ``null_label`` (a class-conditional model) it is ``fn(params, key, num, labels,
    guidance)``: ``labels`` int ``[num]``, ``guidance`` the classifier-free guidance scale,
    applied at model times in ``guidance_interval`` only, when given.
    """
    devices = list(devices or jax.local_devices()[: config.get("num_devices", 0) or None])
    built = samplers_lib.get_sampler(sampler, **sampler_options(diffusion, sampler, eta))
    conditional = null_label is not None
    fn = samplers_lib.build_sampler(
        guided_denoiser_of(diffusion, apply_fn, null_label, guidance_interval) if null_label is not None else denoiser_of(diffusion, apply_fn),
        diffusion.schedule.alphas_cumprod,
        image_shape,
        sampler=built,
        steps=steps,
        parallel=config.parallel,
        devices=devices,
        conditional=conditional,
    )

    def run(params: Params, key: jax.Array, num: int, labels: Any = None, guidance: float = 0.0) -> jax.Array:
        padded = -(-num // len(devices)) * len(devices)
        if not conditional:
            return fn(params, key, padded)[:num]
        labels = np.concatenate([np.asarray(labels, np.int32), np.zeros(padded - num, np.int32)])
        conditions = {"label": labels}
        if guidance:
            conditions["guidance"] = np.full(padded, guidance, np.float32)
        return fn(params, key, padded, conditions)[:num]

    return run


def make_progressive_fn(
    diffusion: diff.Diffusion,
    apply_fn: diff.ApplyFn,
    image_shape: tuple[int, int, int],
    *,
    sampler: str,
    steps: int,
    eta: float,
    record: tuple[int, ...],
) -> Callable[[Params, jax.Array, int], tuple[jax.Array, jax.Array]]:
    """Samples with the predicted x_0 after the steps in ``record`` (DDPM Fig. 6), on one device."""
    make = denoiser_of(diffusion, apply_fn)
    built = samplers_lib.get_sampler(sampler, **sampler_options(diffusion, sampler, eta))
    cache: dict[int, Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]] = {}

    def run(params: Params, key: jax.Array, num: int) -> tuple[jax.Array, jax.Array]:
        if num not in cache:
            cache[num] = jax.jit(
                lambda p, k: samplers_lib.sample_batch(
                    make(p), diffusion.schedule.alphas_cumprod, k, num, image_shape, sampler=built, steps=steps, record=record
                )
            )
        return cache[num](params, key)

    return run


def _with_label(apply_fn: diff.ApplyFn, label: int, params: Params, x: jax.Array, t: jax.Array, dropout_key: jax.Array | None) -> jax.Array:
    """``apply_fn`` with every example's label fixed to ``label``."""
    return apply_fn(params, x, t, dropout_key, y=jnp.full(t.shape, label, jnp.int32))


def check_labels(labels: Any, num_classes: int) -> None:
    """Raises ValueError naming ``--class-label`` unless every label is an int in [0, num_classes)."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer) or labels.size == 0 or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"--class-label: expected ints in [0, {num_classes}), got {np.unique(labels).tolist()[:5]}")


def _labels_of(data: Any, num_classes: int, split: str) -> np.ndarray:
    """The split's labels for a conditional model (zeros, unused, for an unconditional one)."""
    if not num_classes:
        return np.zeros(len(data.images), np.int32)
    if data.labels is None:
        raise ValueError(f"model.num_classes: the {split!r} split has no labels to condition on")
    if data.labels.max() >= num_classes or data.labels.min() < 0:
        raise ValueError(f"model.num_classes: the {split!r} split has labels in [{data.labels.min()}, {data.labels.max()}], expected [0, {num_classes})")
    return data.labels.astype(np.int32)


def guidance_interval(config: ml_collections.ConfigDict) -> tuple[float, float] | None:
    """``eval.guidance_interval`` as ``(t_lo, t_hi)`` in model timesteps, or None (everywhere).

    Raises:
      ValueError: naming the field unless it is empty or two numbers ``0 <= t_lo <= t_hi``.
    """
    interval = tuple(config.eval.guidance_interval)
    if not interval:
        return None
    if len(interval) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in interval) or not 0 <= interval[0] <= interval[1]:
        raise ValueError(f"eval.guidance_interval: expected () or (t_lo, t_hi) with 0 <= t_lo <= t_hi, got {interval}")
    return float(interval[0]), float(interval[1])


def _check_config(config: ml_collections.ConfigDict) -> None:
    if config.data.binarize != "none":
        raise ValueError(f"data.binarize: diffusion models use 8-bit data, expected 'none', got {config.data.binarize!r}")
    if isinstance(config.model.num_timesteps, bool) or config.model.num_timesteps < 1:
        raise ValueError(f"model.num_timesteps: expected a positive int, got {config.model.num_timesteps}")
    ev = config.eval
    if ev.sampler not in samplers_lib.SAMPLERS:
        raise ValueError(f"eval.sampler: expected one of {tuple(samplers_lib.SAMPLERS)}, got {ev.sampler!r}")
    if isinstance(ev.sampler_steps, bool) or not isinstance(ev.sampler_steps, int) or not 1 <= ev.sampler_steps <= config.model.num_timesteps:
        raise ValueError(f"eval.sampler_steps: expected an int in [1, {config.model.num_timesteps}], got {ev.sampler_steps}")
    if ev.progressive_frames < 1 or ev.progressive_rows < 1:
        raise ValueError(f"eval.progressive_frames/progressive_rows: expected positive ints, got {ev.progressive_frames}, {ev.progressive_rows}")
    if ev.bpd_examples < 0:
        raise ValueError(f"eval.bpd_examples: expected a non-negative int, got {ev.bpd_examples}")
    m = config.model
    if isinstance(m.num_classes, bool) or not isinstance(m.num_classes, int) or m.num_classes < 0:
        raise ValueError(f"model.num_classes: expected 0 (unconditional) or a positive int, got {m.num_classes!r}")
    if not 0.0 <= m.cond_drop_prob <= 1.0:
        raise ValueError(f"model.cond_drop_prob: expected a probability in [0, 1], got {m.cond_drop_prob}")
    samplers_lib.check_guidance(ev.guidance)
    guidance_interval(config)
    if ev.guidance and not m.num_classes:
        raise ValueError(f"eval.guidance: classifier-free guidance needs a class-conditional model (model.num_classes > 0), got guidance {ev.guidance}")


def build(config: ml_collections.ConfigDict) -> Experiment:
    """The DDPM family (``model.family = "ddpm"``); see ``genjax.models.diffusion``.

    Training minimises the configured loss on images mapped to [-1, 1]; the cheap
    evaluation is the one-timestep estimate of L_vlb on the eval split, the full one the
    bound from all T terms (``genjax.metrics.bits_per_dim``) on ``eval.bpd_examples``
    images. Samples use ``eval.sampler`` with ``eval.sampler_steps`` steps.
    ``Experiment.model`` is a ``DDPMModel``.
    """
    return build_on(config, None)


def build_on(config: ml_collections.ConfigDict, codec: Codec | None) -> Experiment:
    """A DDPM experiment in pixel space (``codec`` None, ``build``) or on a codec's space.

    Under a codec, training encodes each batch inside the compiled step (the posterior
    sample's noise from the example's key), evaluation reports the one-timestep L_vlb
    estimate and MSE of the encoded eval split under ``<split>_latent_*`` names (the full
    bound needs 8-bit pixel data, so ``eval.bpd_examples`` must be 0), and samples and
    figures are decoded.
    """
    data_shape = shape_of_images(config)
    check_common(config)
    _check_config(config)
    if codec is not None and config.eval.bpd_examples:
        raise ValueError(f"eval.bpd_examples: the bits/dim bound needs pixel-space data, not latents; expected 0, got {config.eval.bpd_examples}")
    image_shape = data_shape if codec is None else codec.shape
    diffusion = build_diffusion(config)
    unet = build_unet(config, image_shape[-1], diffusion)
    apply_fn = unet_apply(unet)
    num_classes = config.model.num_classes
    null_label = num_classes if num_classes else None
    # The bound, the progressive figure and other label-free uses of a conditional model
    # see its unconditional mode: the null label.
    plain_apply = apply_fn if null_label is None else functools.partial(_with_label, apply_fn, null_label)
    cache: dict[str, Any] = {}

    def batches(step: int) -> dict[str, np.ndarray]:
        # The training set is loaded on first use, so that `genjax info` (parameter
        # count) and sampling from a checkpoint never need the dataset.
        if "batcher" not in cache:
            transform = flip_transform if config.data.random_flip else None
            cache["batcher"] = train_batcher(
                config, transform=transform, prepare=lambda b: {**b, "image": diff.to_model_scale(b["image"])}, labels=bool(num_classes)
            )
        return cache["batcher"].batch(step)

    def test_split() -> tuple[np.ndarray, np.ndarray]:
        if "images" not in cache:
            data = load_split(config, config.eval.split)
            keep = config.eval.num_examples or None
            cache["images"] = diff.to_model_scale(data.images[:keep])
            cache["labels"] = _labels_of(data, num_classes, config.eval.split)[:keep]
        return cache["images"], cache["labels"]

    pixel_loss = diff.make_loss(diffusion, apply_fn, cond_drop_prob=config.model.cond_drop_prob if num_classes else 0.0, null_label=null_label)

    def encoded(x: jax.Array, k: jax.Array) -> jax.Array:
        return x if codec is None else codec.encode(x, k)

    def decoded(z: jax.Array) -> np.ndarray:
        x = z if codec is None else codec.decode(z)
        return diff.from_model_scale(jax.device_get(x))

    def loss_fn(params: Params, batch: dict[str, jax.Array], keys: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        return pixel_loss(params, {**batch, "image": encoded(batch["image"], keys)}, keys)

    @jax.jit
    def eval_loss(p: Params, x: jax.Array, y: jax.Array, k: jax.Array) -> diff.LossTerms:
        x = encoded(x, k)

        def one(xi: jax.Array, yi: jax.Array, ki: jax.Array) -> diff.LossTerms:
            return diff.example_loss(diffusion, apply_fn, p, xi, ki, train=False, label=yi if num_classes else None)

        return jax.vmap(one)(x, y, k)

    def evaluate(params: Params, key: jax.Array, full: bool) -> dict[str, float]:
        images, labels = test_split()
        split = config.eval.split if codec is None else f"{config.eval.split}_latent"
        bs = config.eval.batch_size
        terms = map_batches(lambda x, y, keys: eval_loss(params, x, y, keys), images, labels, batch_size=bs, key=key)
        out: dict[str, float] = {
            f"{split}_mse": float(terms.mse.mean()),
            f"{split}_vlb_estimate_bpd": float(terms.vlb.mean() / np.log(2.0)),
            "num_examples": int(images.shape[0]),
            **(codec.info if codec is not None else {}),
        }
        if full and config.eval.bpd_examples:
            subset = images[: config.eval.bpd_examples]
            bpd = bits_per_dim(
                diffusion, plain_apply, params, subset, jax.random.fold_in(key, 1), batch_size=config.eval.bpd_batch, t_chunk=config.eval.t_chunk
            )
            out.update(
                {
                    f"{split}_bits_per_dim": bpd.mean,
                    f"{split}_bits_per_dim_stderr": bpd.stderr,
                    f"{split}_bits_per_dim_prior": bpd.prior_bpd,
                    f"{split}_bits_per_dim_decoder": float(bpd.terms_bpd[0]),
                    "bpd_examples": bpd.num_examples,
                }
            )
        return out

    samplers: dict[tuple[str, int, float], Callable[..., jax.Array]] = {}

    def sample(params: Params, key: jax.Array, num: int, *, labels: Any = None, guidance: float | None = None) -> np.ndarray:
        """``num`` samples in [0, 1]; a conditional model draws ``labels`` (default the
        classes in turn) with guidance scale ``guidance`` (default ``eval.guidance``)."""
        ev = config.eval
        spec = (ev.sampler, ev.sampler_steps, ev.eta)
        if spec not in samplers:
            samplers[spec] = make_sample_fn(
                config,
                diffusion,
                apply_fn,
                image_shape,
                sampler=ev.sampler,
                steps=ev.sampler_steps,
                eta=ev.eta,
                null_label=null_label,
                guidance_interval=guidance_interval(config),
            )
        if not num_classes:
            if labels is not None or guidance:
                raise ValueError("--class-label/--guidance: the model is unconditional (model.num_classes = 0)")
            return decoded(samplers[spec](params, key, num))
        labels = np.arange(num) % num_classes if labels is None else np.broadcast_to(np.asarray(labels), (num,))
        check_labels(labels, num_classes)
        scale = ev.guidance if guidance is None else guidance
        samplers_lib.check_guidance(scale)
        return decoded(samplers[spec](params, key, num, labels, scale))

    def figures(params: Params, key: jax.Array, workdir: pathlib.Path) -> list[pathlib.Path]:
        ev = config.eval
        steps = ev.sampler_steps
        record = tuple(sorted({round(f * (steps - 1)) for f in np.linspace(0.0, 1.0, ev.progressive_frames).tolist()}))
        progressive = make_progressive_fn(diffusion, plain_apply, image_shape, sampler=ev.sampler, steps=steps, eta=ev.eta, record=record)
        _, x0s = progressive(params, key, ev.progressive_rows)  # [rows, frames, *image_shape]
        grid = decoded(jnp.reshape(x0s, (-1,) + image_shape))
        return [viz.save_image_grid(workdir / "progressive.png", grid, ncols=len(record))]

    update = loss_update(config, loss_fn, steps_per_epoch=0)
    return Experiment(
        config=config,
        model=DDPMModel(unet=unet, diffusion=diffusion, apply=apply_fn, image_shape=image_shape, codec=codec),
        # One compiled program: an eager UNet init dispatches (and compiles) every
        # initialiser separately, which is slower on CPU.
        init=jax.jit(
            lambda key: unet.init(
                key, jnp.zeros((1,) + image_shape, jnp.float32), jnp.zeros((1,), jnp.float32), jnp.zeros((1,), jnp.int32) if num_classes else None
            )
        ),
        update=update,
        batches=batches,
        evaluate=evaluate,
        sample=sample,
        figures=figures,
    )
