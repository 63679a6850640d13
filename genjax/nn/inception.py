"""The Inception-v3 network of FID, NHWC, Flax Linen, inference only.

FID (Heusel et al. 2017, arXiv:1706.08500), KID (Binkowski et al. 2018,
arXiv:1801.01401) and the Inception score (Salimans et al. 2016, arXiv:1606.03498) are
standardised on one network: the 2015 TensorFlow ImageNet Inception-v3 graph ``inception-2015-12-05``
(Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision",
arXiv:1512.00567, Table 1 and Figs. 5-7), as used by the TTUR and improved-gan code.
pytorch-fid ported that graph's weights to PyTorch
(``pt_inception-2015-12-05-6726825d.pth``); this module is the same network, so those
weights give the same 2048-d pool3 features and 1008 logits. Where the graph differs from
torchvision's ``Inception3`` (and from the paper's figures):

* the 3x3 average pooling of the pool branch of the 35x35 (``Mixed_5b-d``), 17x17
  (``Mixed_6b-e``) and first 8x8 (``Mixed_7b``) blocks excludes the zero padding from
  its divisor (``count_include_pad=False``);
* the last 8x8 block (``Mixed_7c``) uses 3x3 *max* pooling in its pool branch;
* the classifier has 1008 outputs (1000 ImageNet classes and 8 unused ones).

Every convolution has no bias and is followed by inference-mode BatchNorm (epsilon
1e-3, running statistics only) and a ReLU. There is no auxiliary classifier and no
dropout (neither acts at inference).

Input convention (as pytorch-fid's ``InceptionV3(resize_input=True,
normalize_input=True)``): images ``[B, H, W, 3]`` with values in [0, 1] are resized to
299x299 by bilinear interpolation with half-pixel centres and no antialiasing (torch's
``F.interpolate(mode="bilinear", align_corners=False)``) and mapped to [-1, 1] by
``2 x - 1``. The original TF code resized with TensorFlow's own bilinear op, so FIDs
from this port (and from pytorch-fid) differ slightly from the TF numbers (pytorch-fid
reports ~0.1 absolute on LSUN); compare numbers computed the same way.

Parameter names follow torchvision / pytorch-fid ``state_dict`` names mechanically:
the Flax path of a module is the dotted torch name split at the dots, so the torch key
``Mixed_5b.branch1x1.conv.weight`` is ``params["Mixed_5b"]["branch1x1"]["conv"]["kernel"]``
(transposed from ``[out, in, kh, kw]`` to ``[kh, kw, in, out]``), ``*.bn.weight`` /
``*.bn.bias`` are ``["bn"]["scale"]`` / ``["bn"]["bias"]``, ``*.bn.running_mean`` /
``*.bn.running_var`` are ``batch_stats[...]["bn"]["mean"]`` / ``["var"]``, and
``fc.weight`` / ``fc.bias`` are ``params["fc"]["kernel"]`` (transposed) /
``["bias"]``. ``*.num_batches_tracked`` entries are ignored.

The weights are not shipped or downloaded; see :func:`load_inception_params`.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping
from typing import Any, Literal, cast

import chex
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from genjax.nn.module import apply

__all__ = [
    "FID_INPUT_SIZE",
    "FID_WEIGHTS_FILENAME",
    "MIN_INPUT_SIZE",
    "FIDInceptionV3",
    "InceptionOutput",
    "fid_preprocess",
    "inception_features",
    "inception_outputs",
    "inception_variables_from_state_dict",
    "load_inception_params",
]

FID_INPUT_SIZE = 299
"""Side of the square input the network was trained on; inputs are resized to it."""

MIN_INPUT_SIZE = 75
"""Smallest height/width that keeps every valid-padded stage non-empty (75 -> ... -> 1x1)."""

FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
"""The pytorch-fid release file holding the FID Inception weights (a torch state_dict)."""

_FID_WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_FILENAME
_BN_EPSILON = 1e-3
_NUM_FEATURES = 2048
_NUM_CLASSES = 1008
_Precision = Any  # a jax.lax.Precision, a string such as "highest", or None


@flax.struct.dataclass
class InceptionOutput:
    """Outputs of :class:`FIDInceptionV3` (a pytree).

    Attributes:
      features: ``[B, 2048]`` pool3 features after global average pooling: the FID and
        KID features.
      logits: ``[B, 1008]`` classifier outputs ``features @ W + b`` (torch's ``fc``).
      logits_unbiased: ``[B, 1008]`` ``features @ W`` without the bias. The Inception
        score reference code (``openai/improved-gan``) takes the softmax of these.
    """

    features: Any
    logits: Any
    logits_unbiased: Any


def _validate_images(images: Any, *, resize: bool) -> tuple[int, int, int, int]:
    shape = tuple(np.shape(images))
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"images: expected an NHWC batch [B, H, W, 3] of RGB images in [0, 1], got shape {shape}")
    dtype = np.dtype(images.dtype if hasattr(images, "dtype") else np.asarray(images).dtype)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"images: expected floating-point values in [0, 1], got dtype {dtype} (divide uint8 images by 255)")
    if not resize and min(shape[1], shape[2]) < MIN_INPUT_SIZE:
        raise ValueError(
            f"images: without resizing, expected H and W >= {MIN_INPUT_SIZE}, got {shape[1]}x{shape[2]} "
            f"(use resize=True for the standard {FID_INPUT_SIZE}x{FID_INPUT_SIZE} input)"
        )
    return shape


def fid_preprocess(images: jax.Array, *, resize: bool = True) -> jax.Array:
    """Resizes [0, 1] images to 299x299 and maps them to [-1, 1], as pytorch-fid does.

    Bilinear interpolation with half-pixel centres and no antialiasing: identical to
    ``torch.nn.functional.interpolate(x, (299, 299), mode="bilinear",
    align_corners=False)`` for both up- and downsampling. Resizing happens before
    ``2 x - 1``; both are linear, so the order does not matter.

    Args:
      images: ``[B, H, W, 3]`` floating images in [0, 1].
      resize: resize to 299x299 (the standard); ``False`` keeps ``H x W`` (for tests
        and already-299 inputs), which must then be at least 75x75.

    Returns:
      ``[B, 299, 299, 3]`` (or ``[B, H, W, 3]``) float32 values in [-1, 1].

    Raises:
      ValueError: on a shape other than ``[B, H, W, 3]``, a non-float dtype, or
        ``resize=False`` with ``H`` or ``W`` below 75.
    """
    b, h, w, c = _validate_images(images, resize=resize)
    x = jnp.asarray(images, jnp.float32)
    if resize and (h, w) != (FID_INPUT_SIZE, FID_INPUT_SIZE):
        x = jax.image.resize(x, (b, FID_INPUT_SIZE, FID_INPUT_SIZE, c), method="linear", antialias=False)
    return 2.0 * x - 1.0


class BasicConv2d(nn.Module):
    """Convolution without bias, inference BatchNorm (epsilon 1e-3) and ReLU.

    Attributes:
      features: output channels.
      kernel_size: ``(kh, kw)``.
      strides: stride in both directions.
      padding: symmetric zero padding ``(ph, pw)``.
      precision: matmul precision of the convolution.
    """

    features: int
    kernel_size: tuple[int, int]
    strides: int = 1
    padding: tuple[int, int] = (0, 0)
    precision: _Precision = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the layer to ``x`` ``[B, H, W, C]``."""
        ph, pw = self.padding
        x = nn.Conv(
            self.features,
            self.kernel_size,
            strides=(self.strides, self.strides),
            padding=((ph, ph), (pw, pw)),
            use_bias=False,
            precision=self.precision,
            name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=_BN_EPSILON, name="bn")(x)
        return nn.relu(x)


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
    # The TF graph's pooling with SAME padding averages only the in-image values.
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x: jax.Array, stride: int) -> jax.Array:
    pad = ((1, 1), (1, 1)) if stride == 1 else "VALID"
    return nn.max_pool(x, (3, 3), strides=(stride, stride), padding=pad)


class InceptionA(nn.Module):
    """35x35 block (``Mixed_5b-d``; cf. paper Fig. 5, but with a 5x5 branch as well).

    Branches ``1x1 -> 64``; ``1x1 -> 48, 5x5 -> 64``; ``1x1 -> 64, 3x3 -> 96, 3x3 ->
    96``; ``avgpool 3x3 (padding excluded), 1x1 -> pool_features``; concatenated to
    ``224 + pool_features`` channels.

    Attributes:
      pool_features: channels of the pool branch (32, 64, 64).
      precision: matmul precision of the convolutions.
    """

    pool_features: int
    precision: _Precision = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the block to ``x`` ``[B, H, W, C]``."""
        conv = functools.partial(BasicConv2d, precision=self.precision)
        b1 = conv(64, (1, 1), name="branch1x1")(x)
        b5 = conv(48, (1, 1), name="branch5x5_1")(x)
        b5 = conv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = conv(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = conv(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 grid reduction (``Mixed_6a``; cf. paper Sec. 5, Fig. 10).

    Branches ``3x3/2 -> 384``; ``1x1 -> 64, 3x3 -> 96, 3x3/2 -> 96``; ``maxpool 3x3/2``;
    768 channels out for 288 in.

    Attributes:
      precision: matmul precision of the convolutions.
    """

    precision: _Precision = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the block to ``x`` ``[B, H, W, C]``."""
        conv = functools.partial(BasicConv2d, precision=self.precision)
        b3 = conv(384, (3, 3), strides=2, name="branch3x3")(x)
        bd = conv(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = conv(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3(x, 2)], axis=-1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (``Mixed_6b-e``; paper Fig. 6).

    Branches ``1x1 -> 192``; ``1x1 -> c7, 1x7 -> c7, 7x1 -> 192``; ``1x1 -> c7, 7x1,
    1x7, 7x1 -> c7, 1x7 -> 192``; ``avgpool 3x3 (padding excluded), 1x1 -> 192``; 768
    channels out.

    Attributes:
      channels_7x7: width ``c7`` inside the 7x7 branches (128, 160, 160, 192).
      precision: matmul precision of the convolutions.
    """

    channels_7x7: int
    precision: _Precision = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the block to ``x`` ``[B, H, W, C]``."""
        conv = functools.partial(BasicConv2d, precision=self.precision)
        c7 = self.channels_7x7
        row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))  # (kernel, padding) of 1x7 and 7x1
        b1 = conv(192, (1, 1), name="branch1x1")(x)
        b7 = conv(c7, (1, 1), name="branch7x7_1")(x)
        b7 = conv(c7, row[0], padding=row[1], name="branch7x7_2")(b7)
        b7 = conv(192, col[0], padding=col[1], name="branch7x7_3")(b7)
        bd = conv(c7, (1, 1), name="branch7x7dbl_1")(x)
        bd = conv(c7, col[0], padding=col[1], name="branch7x7dbl_2")(bd)
        bd = conv(c7, row[0], padding=row[1], name="branch7x7dbl_3")(bd)
        bd = conv(c7, col[0], padding=col[1], name="branch7x7dbl_4")(bd)
        bd = conv(192, row[0], padding=row[1], name="branch7x7dbl_5")(bd)
        bp = conv(192, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 grid reduction (``Mixed_7a``).

    Branches ``1x1 -> 192, 3x3/2 -> 320``; ``1x1 -> 192, 1x7, 7x1 -> 192, 3x3/2 ->
    192``; ``maxpool 3x3/2``; 1280 channels out for 768 in.

    Attributes:
      precision: matmul precision of the convolutions.
    """

    precision: _Precision = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the block to ``x`` ``[B, H, W, C]``."""
        conv = functools.partial(BasicConv2d, precision=self.precision)
        b3 = conv(192, (1, 1), name="branch3x3_1")(x)
        b3 = conv(320, (3, 3), strides=2, name="branch3x3_2")(b3)
        b7 = conv(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = conv(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3(x, 2)], axis=-1)


class InceptionE(nn.Module):
    """8x8 block with expanded 1x3 / 3x1 outputs (``Mixed_7b-c``; paper Fig. 7).

    Branches ``1x1 -> 320``; ``1x1 -> 384`` then ``[1x3 -> 384 | 3x1 -> 384]``;
    ``1x1 -> 448, 3x3 -> 384`` then ``[1x3 -> 384 | 3x1 -> 384]``; a 3x3 stride-1 pool
    then ``1x1 -> 192``; 2048 channels out.

    Attributes:
      pool: ``"avg"`` (``Mixed_7b``; padding excluded from the average) or ``"max"``
        (``Mixed_7c``), the FID graph's two variants.
      precision: matmul precision of the convolutions.
    """

    pool: Literal["avg", "max"]
    precision: _Precision = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the block to ``x`` ``[B, H, W, C]``."""
        conv = functools.partial(BasicConv2d, precision=self.precision)
        b1 = conv(320, (1, 1), name="branch1x1")(x)
        b3 = conv(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate(
            [
                conv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                conv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3),
            ],
            axis=-1,
        )
        bd = conv(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = conv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate(
            [
                conv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                conv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd),
            ],
            axis=-1,
        )
        if self.pool == "avg":
            pooled = _avg_pool_3x3(x)
        elif self.pool == "max":
            pooled = _max_pool_3x3(x, 1)
        else:
            raise ValueError(f"pool: expected 'avg' or 'max', got {self.pool!r}")
        bp = conv(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 as frozen in the FID graph ``inception-2015-12-05`` (arXiv:1512.00567).

    Stem (the released graph's; paper Table 1 differs slightly): ``3x3/2 -> 32``, ``3x3 -> 32``, ``3x3 pad 1 -> 64``,
    ``maxpool 3x3/2``, ``1x1 -> 80``, ``3x3 -> 192``, ``maxpool 3x3/2``; then
    ``Mixed_5b/5c/5d`` (:class:`InceptionA`, pool branch 32/64/64), ``Mixed_6a``
    (:class:`InceptionB`), ``Mixed_6b-e`` (:class:`InceptionC`, ``c7`` =
    128/160/160/192), ``Mixed_7a`` (:class:`InceptionD`), ``Mixed_7b/7c``
    (:class:`InceptionE`, avg / max pool), global average pooling to the 2048-d pool3
    features, and ``fc`` to 1008 logits. 23,850,960 parameters (conv kernels, BN scales
    and biases, fc) plus 2 x 17,216 BN running statistics. Use it with the variables of
    :func:`load_inception_params`; there is no training mode.

    Attributes:
      num_classes: classifier outputs (1008 for the FID weights).
      resize_input: resize inputs to 299x299 (see :func:`fid_preprocess`); ``False``
        feeds ``H x W`` (at least 75x75) as is.
      precision: matmul precision of every convolution and of ``fc``. ``HIGHEST`` by
        default, so TPUs and GPUs do not silently use bf16 / TF32 passes and the
        features match the float32 reference.
    """

    num_classes: int = _NUM_CLASSES
    resize_input: bool = True
    precision: _Precision = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, images: jax.Array, *, features_only: bool = False) -> InceptionOutput | jax.Array:
        """Computes pool3 features (and logits) of a batch of images.

        Args:
          images: ``[B, H, W, 3]`` RGB images with values in [0, 1] (not checked
            inside a trace; :func:`inception_outputs` checks them).
          features_only: return only the ``[B, 2048]`` features and skip ``fc``.

        Returns:
          The ``[B, 2048]`` features if ``features_only``, else an
          :class:`InceptionOutput`.

        Raises:
          ValueError: on a shape other than ``[B, H, W, 3]``, a non-float dtype, or
            ``resize_input=False`` with ``H`` or ``W`` below 75.
        """
        x = fid_preprocess(images, resize=self.resize_input)
        conv = functools.partial(BasicConv2d, precision=self.precision)
        x = conv(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
        x = conv(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = conv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3(x, 2)
        x = conv(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = conv(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3(x, 2)
        for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = InceptionA(pool_features, precision=self.precision, name=name)(x)
        x = InceptionB(precision=self.precision, name="Mixed_6a")(x)
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = InceptionC(c7, precision=self.precision, name=name)(x)
        x = InceptionD(precision=self.precision, name="Mixed_7a")(x)
        x = InceptionE("avg", precision=self.precision, name="Mixed_7b")(x)
        x = InceptionE("max", precision=self.precision, name="Mixed_7c")(x)
        features = jnp.mean(x, axis=(1, 2))
        chex.assert_shape(features, (images.shape[0], _NUM_FEATURES))
        if features_only:
            return features
        fc = nn.Dense(self.num_classes, precision=self.precision, name="fc")
        logits = fc(features)
        kernel = fc.variables["params"]["kernel"]
        unbiased = jnp.matmul(features, kernel, precision=self.precision)
        return InceptionOutput(features=features, logits=logits, logits_unbiased=unbiased)


# ----------------------------------------------------------------------------- weights


@functools.cache
def _expected_state_dict() -> dict[str, tuple[str, tuple[str, ...], tuple[int, ...]]]:
    """torch name -> (collection, Flax path, torch shape) for the 1008-class network."""
    model = FIDInceptionV3(resize_input=False)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, MIN_INPUT_SIZE, MIN_INPUT_SIZE, 3), jnp.float32))
    leaf_names = {
        ("params", "kernel"): "weight",
        ("params", "scale"): "weight",
        ("params", "bias"): "bias",
        ("batch_stats", "mean"): "running_mean",
        ("batch_stats", "var"): "running_var",
    }
    expected = {}
    for collection in ("params", "batch_stats"):
        for path, leaf in traverse_util.flatten_dict(shapes[collection]).items():
            torch_name = ".".join((*path[:-1], leaf_names[(collection, path[-1])]))
            shape = tuple(leaf.shape)
            if len(shape) == 4:  # conv kernel [kh, kw, in, out] <- torch [out, in, kh, kw]
                shape = (shape[3], shape[2], shape[0], shape[1])
            elif len(shape) == 2:  # dense kernel [in, out] <- torch [out, in]
                shape = shape[::-1]
            expected[torch_name] = (collection, path, shape)
    return expected


def _list_keys(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def inception_variables_from_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Converts a pytorch-fid / torchvision-named Inception state_dict to Flax variables.

    The mapping is the one in the module docstring: names split at the dots, conv
    weights ``[out, in, kh, kw] -> [kh, kw, in, out]``, ``fc.weight`` transposed, BN
    ``weight/bias/running_mean/running_var -> scale/bias/mean/var``. Entries named
    ``*.num_batches_tracked`` are ignored; every other entry must be expected.

    Args:
      state_dict: torch names -> arrays (numpy arrays or anything ``np.asarray``
        accepts), float32 or another float dtype.

    Returns:
      ``{"params": ..., "batch_stats": ...}`` float32 numpy pytrees for
      ``FIDInceptionV3().apply``.

    Raises:
      ValueError: naming missing, unexpected or mis-shaped keys, or keys holding
        NaN/Inf values.
    """
    expected = _expected_state_dict()
    given = {k: v for k, v in state_dict.items() if not k.endswith(".num_batches_tracked")}
    missing = sorted(set(expected) - set(given))
    extra = sorted(set(given) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing keys: {_list_keys(missing)}")
        if extra:
            parts.append(f"unexpected keys: {_list_keys(extra)}")
        hint = ""
        if any(k.startswith("AuxLogits.") for k in extra):
            hint = (
                " (AuxLogits.* belong to torchvision's ImageNet Inception3; FID uses the pytorch-fid "
                f"weights {FID_WEIGHTS_FILENAME}, which have no auxiliary classifier)"
            )
        raise ValueError(f"state_dict: expected the {len(expected)} tensors of the FID Inception-v3 (pytorch-fid names), got {'; '.join(parts)}{hint}")
    flat: dict[str, dict[tuple[str, ...], np.ndarray]] = {"params": {}, "batch_stats": {}}
    bad_shapes, non_finite = [], []
    for name, (collection, path, torch_shape) in expected.items():
        value = np.asarray(given[name])
        if tuple(value.shape) != torch_shape:
            bad_shapes.append(f"{name} (expected {torch_shape}, got {tuple(value.shape)})")
            continue
        value = value.astype(np.float32)
        if not np.all(np.isfinite(value)):
            non_finite.append(name)
        if value.ndim == 4:
            value = np.transpose(value, (2, 3, 1, 0))
        elif value.ndim == 2:
            value = value.T
        flat[collection][path] = np.ascontiguousarray(value)
    if bad_shapes:
        raise ValueError(f"state_dict: mis-shaped tensors (torch layout): {_list_keys(bad_shapes)}")
    if non_finite:
        raise ValueError(f"state_dict: expected finite values, got NaN or Inf in {_list_keys(non_finite)}")
    return {collection: traverse_util.unflatten_dict(items) for collection, items in flat.items()}


def _read_state_dict(path: str) -> dict[str, np.ndarray]:
    if path.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError as err:  # pragma: no cover - safetensors is installed with flax's deps
            raise ValueError(f"path: reading {path!r} needs the safetensors package; convert to .npz instead") from err
        return dict(load_file(path))
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    raise ValueError(
        f"path: expected a .safetensors or .npz file of torch state_dict names and arrays, got {path!r} "
        f"(convert a .pth with `python -m genjax.metrics.convert_inception IN.pth OUT.safetensors`)"
    )


def load_inception_params(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Loads the FID Inception-v3 weights from a local .safetensors or .npz file.

    The file holds the pytorch-fid state_dict (torch names such as
    ``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``,
    ``fc.weight``) as arrays, as written by ``python -m genjax.metrics.convert_inception``.
    Nothing is downloaded and nothing is unpickled (``.npz`` is read with
    ``allow_pickle=False``).

    Args:
      path: the ``.safetensors`` or ``.npz`` file.

    Returns:
      The variables ``{"params": ..., "batch_stats": ...}`` for
      ``FIDInceptionV3().apply(variables, images)`` and :func:`inception_outputs`.

    Raises:
      FileNotFoundError: if ``path`` does not exist; the message says where to get the
        weights and how to convert them.
      ValueError: on another extension, or missing, unexpected, mis-shaped or
        non-finite tensors (named in the message).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"path: the FID Inception weights file {path!r} does not exist. FID's Inception-v3 weights are not "
            f"shipped with genjax and are never downloaded by it (no network access is assumed, and the weights "
            f"come under their own licence). Download {FID_WEIGHTS_FILENAME} (the TF graph "
            f"inception-2015-12-05 ported by pytorch-fid) from the pytorch-fid release {_FID_WEIGHTS_URL} , then "
            f"convert it with `python -m genjax.metrics.convert_inception {FID_WEIGHTS_FILENAME} "
            f"inception_fid.safetensors` (needs torch; loads with weights_only=True) and pass the .safetensors path."
        )
    return inception_variables_from_state_dict(_read_state_dict(path))


# ----------------------------------------------------------------------------- batching


@functools.partial(jax.jit, static_argnames=("resize",))
def _forward(variables: Mapping[str, Any], images: jax.Array, resize: bool) -> InceptionOutput:
    # Without features_only, FIDInceptionV3.__call__ returns an InceptionOutput.
    return cast(InceptionOutput, apply(FIDInceptionV3(resize_input=resize), variables, FIDInceptionV3.__call__, images))


def _check_variables(variables: Any) -> None:
    if not isinstance(variables, Mapping) or not {"params", "batch_stats"} <= set(variables):
        got = sorted(variables) if isinstance(variables, Mapping) else type(variables).__name__
        raise ValueError(f"variables: expected the dict of load_inception_params with 'params' and 'batch_stats', got {got}")


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    return int(batch_size)


def inception_outputs(
    variables: Mapping[str, Any],
    images: jax.Array | np.ndarray,
    *,
    batch_size: int = 100,
    resize: bool = True,
) -> InceptionOutput:
    """Features and logits of many images, in fixed-size batches with one compilation.

    Rows are processed ``min(batch_size, N)`` at a time; the last batch is padded with
    zero images to the same size, so the forward compiles once per image shape (it is
    cached across calls) and padding rows are dropped from the result.

    Args:
      variables: from :func:`load_inception_params`.
      images: ``[N, H, W, 3]`` floating images in [0, 1] (values outside [-1e-3,
        1 + 1e-3] or non-finite are rejected: [-1, 1] or [0, 255] images would give
        wrong features silently).
      batch_size: images per forward pass.
      resize: resize to 299x299 (the FID standard); see :func:`fid_preprocess`.

    Returns:
      An :class:`InceptionOutput` of float32 numpy arrays ``[N, 2048]``, ``[N, 1008]``,
      ``[N, 1008]``.

    Raises:
      ValueError: on bad ``variables``, ``images`` or ``batch_size``.
    """
    _check_variables(variables)
    batch_size = _check_batch_size(batch_size)
    n = _validate_images(images, resize=resize)[0]
    if n == 0:
        raise ValueError(f"images: expected at least one image, got shape {tuple(np.shape(images))}")
    host = np.asarray(images, np.float32)
    lo, hi = float(host.min()), float(host.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -1e-3 or hi > 1.0 + 1e-3:
        raise ValueError(
            f"images: expected finite values in [0, 1], got range [{lo:.4g}, {hi:.4g}] (map [-1, 1] images with (x + 1) / 2 and [0, 255] images with x / 255)"
        )
    step = min(batch_size, n)
    variables = jax.device_put(variables)  # once, not once per batch
    outputs = []
    for start in range(0, n, step):
        batch = host[start : start + step]
        if batch.shape[0] < step:
            batch = np.pad(batch, ((0, step - batch.shape[0]), (0, 0), (0, 0), (0, 0)))
        outputs.append(_forward(variables, batch, resize))
    # Fetch after dispatching everything, so host transfers overlap device work.
    host_out = jax.device_get(outputs)
    return InceptionOutput(
        features=np.concatenate([o.features for o in host_out])[:n],
        logits=np.concatenate([o.logits for o in host_out])[:n],
        logits_unbiased=np.concatenate([o.logits_unbiased for o in host_out])[:n],
    )


def inception_features(
    variables: Mapping[str, Any],
    images: jax.Array | np.ndarray,
    *,
    batch_size: int = 100,
    resize: bool = True,
) -> np.ndarray:
    """The ``[N, 2048]`` pool3 features of FID and KID (Heusel et al. 2017, arXiv:1706.08500).

    :func:`inception_outputs` (same arguments, same compiled forward) keeping only the
    features; feed them to :func:`genjax.metrics.frechet_distance_from_features`.

    Args:
      variables: from :func:`load_inception_params`.
      images: ``[N, H, W, 3]`` floating images in [0, 1].
      batch_size: images per forward pass.
      resize: resize to 299x299 (the FID standard).

    Returns:
      ``[N, 2048]`` float32 numpy features.

    Raises:
      ValueError: on bad ``variables``, ``images`` or ``batch_size``.
    """
    return inception_outputs(variables, images, batch_size=batch_size, resize=resize).features
