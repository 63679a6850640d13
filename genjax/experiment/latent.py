"""Latent diffusion (Rombach et al. 2022, arXiv 2112.10752) in two families.

* ``model.family = "autoencoder_kl"``: the KL-regularised autoencoder
  (:class:`genjax.nn.sd.AutoencoderKL`, the objective of ``genjax.models.latent``).
* ``model.family = "ldm"``: a DDPM (the ``ddpm`` family's UNet, process, samplers,
  conditioning and guidance) trained on the latents of a frozen, trained
  ``autoencoder_kl`` run named by ``model.autoencoder``, with its samples decoded.

Both train, evaluate and sample through the ordinary ``genjax train | eval | sample``.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax import keys, viz
from genjax.data import map_batches
from genjax.experiment import ddpm
from genjax.experiment.base import Experiment, check_common, eval_images, image_shape, load_split, loss_update, train_batcher
from genjax.experiment.config import base_config
from genjax.models import diffusion as diff
from genjax.models import latent as latent_lib
from genjax.nn.sd import AutoencoderKL
from genjax.types import Params


def autoencoder_config() -> ml_collections.ConfigDict:
    """``base_config()`` with the autoencoder's fields at Stable Diffusion's KL-f8 values.

    ``model``: ``block_out_channels`` (one encoder/decoder level each; ``f = 2**(levels -
    1)``), ``layers_per_block``, ``latent_channels``, ``norm_num_groups``, the KL weight
    (1e-6, Rombach et al. Appendix G) and the reconstruction distance (``"l1"`` or
    ``"l2"``); Adam at 1e-4. ``data``: 8-bit images in [-1, 1] (``binarize = "none"``).
    """
    c = base_config()
    c.model = ml_collections.ConfigDict()
    c.model.family = "autoencoder_kl"
    c.model.block_out_channels = (128, 256, 512, 512)
    c.model.layers_per_block = 2
    c.model.latent_channels = 4
    c.model.norm_num_groups = 32
    c.model.kl_weight = 1e-6
    c.model.reconstruction = "l1"
    c.data.binarize = "none"
    c.train.learning_rate = 1e-4
    c.eval.num_grid = 64
    return c


def build_autoencoder(config: ml_collections.ConfigDict) -> AutoencoderKL:
    """The ``AutoencoderKL`` an ``autoencoder_kl`` config describes."""
    m = config.model
    channels = tuple(int(c) for c in m.block_out_channels)
    if not channels or any(c <= 0 or c % m.norm_num_groups for c in channels):
        raise ValueError(f"model.block_out_channels: expected positive multiples of model.norm_num_groups={m.norm_num_groups}, got {channels}")
    if m.latent_channels < 1 or m.layers_per_block < 1:
        raise ValueError(f"model.latent_channels/layers_per_block: expected positive ints, got {m.latent_channels}, {m.layers_per_block}")
    c = image_shape(config)[-1]
    return AutoencoderKL(
        in_channels=c,
        out_channels=c,
        down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels),
        block_out_channels=channels,
        layers_per_block=m.layers_per_block,
        latent_channels=m.latent_channels,
        norm_num_groups=m.norm_num_groups,
    )


def _check_image_size(config: ml_collections.ConfigDict, levels: int) -> None:
    h, w, _ = image_shape(config)
    factor = 2 ** (levels - 1)
    if h % factor or w % factor:
        raise ValueError(f"data.image_shape: {levels} autoencoder levels downsample by {factor}; the height and width must be multiples of it, got {(h, w)}")


def build_autoencoder_experiment(config: ml_collections.ConfigDict) -> Experiment:
    """The ``autoencoder_kl`` family. ``Experiment.model`` is the ``AutoencoderKL``.

    Evaluation: per-example reconstruction term, KL and the per-pixel MSE and PSNR
    (images in [0, 1]) of reconstructions from posterior samples; the full evaluation
    adds the standard deviation of the latents and the scale factor it implies.
    Samples decode ``z ~ N(0, I)``: the prior of the KL term, which with a small KL
    weight is far from the aggregate posterior, so they are a diagnostic, not a
    generative model (that is the ``ldm`` family's job).
    """
    check_common(config)
    m = config.model
    if config.data.binarize != "none":
        raise ValueError(f"data.binarize: the autoencoder models 8-bit images, expected 'none', got {config.data.binarize!r}")
    shape = image_shape(config)
    _check_image_size(config, len(m.block_out_channels))
    module = build_autoencoder(config)
    loss = latent_lib.make_loss(module, kl_weight=m.kl_weight, reconstruction=m.reconstruction)
    cache: dict[str, Any] = {}

    def batches(step: int) -> dict[str, np.ndarray]:
        # Loaded on first use: `genjax info` and sampling never need the training set.
        if "batcher" not in cache:
            cache["batcher"] = train_batcher(config, prepare=lambda b: {**b, "image": diff.to_model_scale(b["image"])})
        return cache["batcher"].batch(step)

    def test_images() -> np.ndarray:
        if "images" not in cache:
            cache["images"] = diff.to_model_scale(eval_images(config))
        return cache["images"]

    terms_fn = jax.jit(
        jax.vmap(
            lambda p, x, k: latent_lib.example_loss(module, p, x, k, kl_weight=m.kl_weight, reconstruction=m.reconstruction),
            in_axes=(None, 0, 0),
        )
    )
    latents_fn = jax.jit(lambda p, x, ks: latent_lib.encode_latents(module, p, x, ks, 1.0))

    def evaluate(params: Params, key: jax.Array, full: bool) -> dict[str, float]:
        images = test_images()
        bs = config.eval.batch_size
        split = config.eval.split
        terms = map_batches(lambda x, ks: terms_fn(params, x, ks), images, batch_size=bs, key=key)
        out: dict[str, float] = {"num_examples": int(images.shape[0])}
        for name in ("reconstruction", "kl", "mse"):
            out[f"{split}_{name}"] = float(np.mean(getattr(terms, name)))
        # MSE in model scale [-1, 1] is 4x the MSE of images in [0, 1].
        out[f"{split}_psnr_db"] = float(10.0 * math.log10(4.0 / out[f"{split}_mse"]))
        if full:
            z = latents_fn(params, jnp.asarray(images[:bs]), jax.random.split(jax.random.fold_in(key, 1), min(bs, len(images))))
            out[f"{split}_latent_std"] = float(jnp.std(z))
            out["scale_factor_estimate"] = float(latent_lib.scale_factor(z))
        return out

    decode = jax.jit(lambda p, z: latent_lib.decode_latents(module, p, z, 1.0))
    latent_shape = jax.eval_shape(lambda: latents_fn(module.init(jax.random.key(0), jnp.zeros((1,) + shape)), jnp.zeros((1,) + shape), None)).shape[1:]

    def sample(params: Params, key: jax.Array, num: int) -> np.ndarray:
        z = jax.random.normal(key, (num,) + tuple(latent_shape), jnp.float32)
        return diff.from_model_scale(jax.device_get(decode(params, z)))

    reconstruct = jax.jit(lambda p, x: latent_lib.decode_latents(module, p, latent_lib.encode_latents(module, p, x, None, 1.0), 1.0))

    def figures(params: Params, key: jax.Array, workdir: pathlib.Path) -> list[pathlib.Path]:
        images = test_images()[:32]
        recon = np.asarray(reconstruct(params, jnp.asarray(images)))
        pairs = diff.from_model_scale(np.stack([images, recon], axis=1).reshape((-1,) + images.shape[1:]))
        return [viz.save_image_grid(workdir / "reconstructions.png", pairs, ncols=16)]

    return Experiment(
        config=config,
        model=module,
        init=jax.jit(lambda key: module.init(key, jnp.zeros((1,) + shape, jnp.float32))),
        update=loss_update(config, loss, steps_per_epoch=0),
        batches=batches,
        evaluate=evaluate,
        sample=sample,
        figures=figures,
    )


def ldm_config() -> ml_collections.ConfigDict:
    """The ``ddpm`` family's config on an autoencoder's latents.

    Adds ``model.autoencoder`` (the workdir of a trained ``autoencoder_kl`` run, whose
    latest checkpoint is frozen), ``model.scale_factor`` (0: estimated as ``1 / std`` of
    ``model.scale_examples`` posterior samples of training images, Rombach et al. sec.
    4.3.2) and sets ``model.clip_x0 = False`` (latents are not bounded to [-1, 1]) and
    ``eval.bpd_examples = 0`` (a pixel bound does not apply). Everything else is the
    DDPM family's, conditioning and guidance included.
    """
    c = ddpm.default_config()
    c.model.family = "ldm"
    c.model.autoencoder = ""
    c.model.scale_factor = 0.0
    c.model.scale_examples = 1000
    c.model.clip_x0 = False
    c.eval.bpd_examples = 0
    return c


def load_autoencoder(config: ml_collections.ConfigDict) -> tuple[AutoencoderKL, Params, int]:
    """The frozen autoencoder of an ``ldm`` config: its module, evaluation parameters and step.

    Raises:
      ValueError / FileNotFoundError: naming ``model.autoencoder`` when it is empty, has
        no run or checkpoint, is not an ``autoencoder_kl`` run, or was trained on
        images of another shape than ``data.image_shape``.
    """
    from genjax.experiment.run import load_run, run_config

    path = config.model.autoencoder
    if not isinstance(path, str) or not path:
        raise ValueError(f"model.autoencoder: expected the workdir of a trained autoencoder_kl run, got {path!r}")
    try:
        # The stored config first: a wrong family or image shape is named before any
        # checkpoint is read.
        theirs = run_config(path)
        family = theirs.model.family
        if family != "autoencoder_kl":
            raise ValueError(f"'{path}' is a {family!r} run, expected an 'autoencoder_kl' run")
        if tuple(theirs.data.image_shape) != tuple(config.data.image_shape):
            raise ValueError(
                f"'{path}' was trained on images of shape {tuple(theirs.data.image_shape)}, but data.image_shape is {tuple(config.data.image_shape)}"
            )
        run = load_run(path)
    except (FileNotFoundError, ValueError) as err:
        raise type(err)(f"model.autoencoder: {str(err).removeprefix('workdir: ')}") from None
    return run.experiment.model, run.params, int(run.state.step)


def build_ldm(config: ml_collections.ConfigDict) -> Experiment:
    """The ``ldm`` family: ``genjax.experiment.ddpm.build_on`` with the latent codec of the
    autoencoder named in ``model.autoencoder`` (``Experiment.model.codec``)."""
    m = config.model
    if not (m.scale_factor >= 0.0 and math.isfinite(m.scale_factor)):
        raise ValueError(f"model.scale_factor: expected 0 (estimate from data) or a positive float, got {m.scale_factor}")
    if m.scale_examples < 2:
        raise ValueError(f"model.scale_examples: expected an int >= 2, got {m.scale_examples}")
    module, ae_params, ae_step = load_autoencoder(config)
    ae_params = jax.device_put(ae_params)
    encode_batch = jax.jit(lambda x, ks: latent_lib.encode_latents(module, ae_params, x, ks, 1.0))
    scale = m.scale_factor
    if not scale:
        images = diff.to_model_scale(load_split(config, config.data.train_split).images[: m.scale_examples])
        # A pure function of the seed and the autoencoder, so a resumed run gets the same scale.
        stream = keys.stream(config.seed, keys.LATENT_SCALE)
        scale = float(latent_lib.scale_factor(encode_batch(jnp.asarray(images), jax.random.split(stream, len(images)))))
    shape = tuple(int(d) for d in jax.eval_shape(encode_batch, jnp.zeros((1,) + image_shape(config)), jax.random.split(jax.random.key(0), 1)).shape[1:])

    def encode(x: jax.Array, ks: Any) -> jax.Array:
        return latent_lib.encode_latents(module, ae_params, x, ks, scale)

    decode = jax.jit(lambda z: latent_lib.decode_latents(module, ae_params, z, scale))
    codec = ddpm.Codec(shape=(shape[0], shape[1], shape[2]), encode=encode, decode=decode, info={"scale_factor": scale, "autoencoder_step": ae_step})
    return ddpm.build_on(config, codec)
