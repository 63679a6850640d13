"""Tests for genjax.nn.inception: the FID Inception-v3 against an independent PyTorch twin.

torchvision is not available here, so the reference is a compact PyTorch module written
below from the architecture (torchvision / pytorch-fid parameter names, FID pooling
variants), randomly initialised with calibrated, non-trivial BatchNorm statistics. It
runs at 75x75 (the smallest input that reaches a 1x1 grid) with ``resize=False`` so the
one compiled Flax forward, shared by the module-scoped fixture, stays cheap; resizing is
checked on its own against ``torch.nn.functional.interpolate``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
safetensors_numpy = pytest.importorskip("safetensors.numpy")

from genjax.metrics.convert_inception import main as convert_main
from genjax.nn.inception import (
    FID_WEIGHTS_FILENAME,
    FIDInceptionV3,
    fid_preprocess,
    inception_features,
    inception_outputs,
    inception_variables_from_state_dict,
    load_inception_params,
)

# 107 -> 53 -> 51 -> 25 (pool) -> 23 -> 11 (pool) -> 5 (Mixed_6a) -> 2 (Mixed_7a): the smallest
# size whose 8x8-stage maps are 2x2, so Mixed_7b's average pool (padding excluded) and
# Mixed_7c's max pool differ from each other and from the identity.
SIZE = 107


# ------------------------------------------------------------------ the PyTorch twin


class _Conv(torch.nn.Module):
    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = torch.nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _A(torch.nn.Module):
    def __init__(self, cin: int, pool: int):
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = _Conv(cin, 48, 1), _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(cin, pool, 1)

    def forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, bd, self.branch_pool(_avg(x))], 1)


class _B(torch.nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x):
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), bd, F.max_pool2d(x, 3, stride=2)], 1)


class _C(torch.nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1, self.branch7x7_2 = _Conv(cin, c7, 1), _Conv(c7, c7, **row)
        self.branch7x7_3 = _Conv(c7, 192, **col)
        self.branch7x7dbl_1, self.branch7x7dbl_2 = _Conv(cin, c7, 1), _Conv(c7, c7, **col)
        self.branch7x7dbl_3, self.branch7x7dbl_4 = _Conv(c7, c7, **row), _Conv(c7, c7, **col)
        self.branch7x7dbl_5 = _Conv(c7, 192, **row)
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_avg(x))], 1)


class _D(torch.nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = _Conv(cin, 192, 1), _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class _E(torch.nn.Module):
    def __init__(self, cin: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1, self.branch3x3dbl_2 = _Conv(cin, 448, 1), _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = _avg(x) if self.pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], 1)


class _TorchFIDInception(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3, self.Conv2d_2a_3x3 = _Conv(3, 32, 3, stride=2), _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1, self.Conv2d_4a_3x3 = _Conv(64, 80, 1), _Conv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = _A(192, 32), _A(256, 64), _A(288, 64)
        self.Mixed_6a = _B(288)
        self.Mixed_6b, self.Mixed_6c = _C(768, 128), _C(768, 160)
        self.Mixed_6d, self.Mixed_6e = _C(768, 160), _C(768, 192)
        self.Mixed_7a = _D(768)
        self.Mixed_7b, self.Mixed_7c = _E(1280, "avg"), _E(2048, "max")
        self.fc = torch.nn.Linear(2048, 1008)

    def forward(self, images_nhwc):
        x = 2.0 * images_nhwc.permute(0, 3, 1, 2) - 1.0
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, stride=2)))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        features = x.mean(dim=(2, 3))
        return features, self.fc(features)


def _make_torch_model() -> _TorchFIDInception:
    torch.manual_seed(0)
    model = _TorchFIDInception()
    gen = np.random.default_rng(1)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0.0, 0.2)
                mod.momentum = 1.0  # the calibration pass below sets running = batch stats
        # Calibrate the running statistics so activations stay O(1) through 94 layers,
        # then perturb them so they are not exactly the statistics of any batch.
        model.train()
        model(torch.from_numpy(gen.random((6, SIZE, SIZE, 3), dtype=np.float32)))
        model.eval()
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_var.mul_(torch.empty_like(mod.running_var).uniform_(0.8, 1.25))
                mod.running_mean.add_(0.1 * torch.randn_like(mod.running_mean) * mod.running_var.sqrt())
    return model


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Torch twin, its state_dict on disk, and Flax vs torch outputs on 3 images."""
    model = _make_torch_model()
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("inception") / "twin.safetensors"
    safetensors_numpy.save_file(state, str(path))  # includes the int64 num_batches_tracked
    variables = load_inception_params(path)
    images = np.random.default_rng(2).random((3, SIZE, SIZE, 3), dtype=np.float32)
    with torch.no_grad():
        feats, logits = model(torch.from_numpy(images))
    # 3 images in batches of 2: the last batch is padded, one compiled shape in all.
    out = inception_outputs(variables, images, batch_size=2, resize=False)
    return {
        "model": model,
        "state": state,
        "path": path,
        "variables": variables,
        "images": images,
        "torch": (feats.numpy(), logits.numpy()),
        "flax": out,
    }


# ------------------------------------------------------------------ tests


def _conv_params(cin: int, cout: int, kh: int, kw: int) -> int:
    return cin * cout * kh * kw + 2 * cout  # bias-free kernel, BN scale and shift


def _expected_param_count() -> int:
    """Parameters of the FID Inception-v3 from its layer list (arXiv:1512.00567, Table 1).

    Cross-check: torchvision's ``inception_v3`` documents 27,161,264 parameters with the
    auxiliary head (conv 768->128 1x1: 98,560; conv 128->768 5x5: 2,459,136; fc
    768->1000: 769,000; 3,326,696 in all) and 1000 classes, so without the head
    23,834,568; 1008 classes add 8 x 2048 + 8 = 16,392: 23,850,960.
    """
    c = _conv_params
    stem = c(3, 32, 3, 3) + c(32, 32, 3, 3) + c(32, 64, 3, 3) + c(64, 80, 1, 1) + c(80, 192, 3, 3)

    def block_a(cin, pool):
        return c(cin, 64, 1, 1) + c(cin, 48, 1, 1) + c(48, 64, 5, 5) + c(cin, 64, 1, 1) + c(64, 96, 3, 3) + c(96, 96, 3, 3) + c(cin, pool, 1, 1)

    def block_c(c7):
        return (
            c(768, 192, 1, 1)
            + c(768, c7, 1, 1) + c(c7, c7, 1, 7) + c(c7, 192, 7, 1)
            + c(768, c7, 1, 1) + 3 * c(c7, c7, 7, 1) + c(c7, 192, 1, 7)
            + c(768, 192, 1, 1)
        )  # fmt: skip

    def block_e(cin):
        return (
            c(cin, 320, 1, 1)
            + c(cin, 384, 1, 1) + 2 * c(384, 384, 1, 3)
            + c(cin, 448, 1, 1) + c(448, 384, 3, 3) + 2 * c(384, 384, 1, 3)
            + c(cin, 192, 1, 1)
        )  # fmt: skip

    block_b = c(288, 384, 3, 3) + c(288, 64, 1, 1) + c(64, 96, 3, 3) + c(96, 96, 3, 3)
    block_d = c(768, 192, 1, 1) + c(192, 320, 3, 3) + c(768, 192, 1, 1) + 2 * c(192, 192, 1, 7) + c(192, 192, 3, 3)
    mixed = block_a(192, 32) + block_a(256, 64) + block_a(288, 64) + block_b
    mixed += sum(block_c(c7) for c7 in (128, 160, 160, 192)) + block_d + block_e(1280) + block_e(2048)
    return stem + mixed + 2048 * 1008 + 1008


def test_parameter_count_and_output_shapes():
    model = FIDInceptionV3()
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)  # resized to 299 inside
    out, variables = jax.eval_shape(model.init_with_output, jax.random.key(0), x)
    count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(variables["params"]))
    assert count == _expected_param_count() == 23_850_960
    # A running mean and variance for every BN scale and shift (94 BNs, 17,216 channels).
    stats = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(variables["batch_stats"]))
    bn_affine = sum(int(np.prod(leaf.shape)) for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"]) if jax.tree_util.DictKey("bn") in path)
    assert stats == bn_affine == 2 * 17_216
    assert out.features.shape == (2, 2048) and out.logits.shape == (2, 1008)
    assert out.logits_unbiased.shape == (2, 1008)
    only = jax.eval_shape(lambda v, im: model.apply(v, im, features_only=True), variables, x)
    assert only.shape == (2, 2048)


def test_torch_twin_has_the_same_parameters(reference):
    model = reference["model"]
    assert sum(p.numel() for p in model.parameters()) == _expected_param_count()
    assert len([k for k in reference["state"] if not k.endswith("num_batches_tracked")]) == 94 * 5 + 2


def test_matches_pytorch_twin(reference):
    feats, logits = reference["torch"]
    out = reference["flax"]
    assert out.features.shape == (3, 2048) and out.logits.shape == (3, 1008)
    # Float32 round-off: against the twin run in float64, both this port and torch's
    # float32 forward were measured off by 2-3e-5 of the output scale on these inputs.
    assert np.abs(feats).max() > 0.1 and np.abs(logits).max() > 0.1
    assert np.abs(out.features - feats).max() <= 1e-4 * np.abs(feats).max()
    assert np.abs(out.logits - logits).max() <= 1e-4 * np.abs(logits).max()
    bias = reference["state"]["fc.bias"]
    np.testing.assert_allclose(out.logits_unbiased, out.logits - bias[None, :], atol=1e-5 * np.abs(logits).max())
    # The three images differ, so padding rows did not leak into the results.
    assert np.abs(out.features[2] - out.features[0]).max() > 1e-3


def test_inception_features_reuses_the_compiled_forward(reference):
    feats = inception_features(reference["variables"], reference["images"][:2], batch_size=5, resize=False)
    np.testing.assert_allclose(feats, reference["flax"].features[:2], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 32, 32, 3), (1, 37, 50, 3), (1, 320, 410, 3)])
def test_resize_matches_torch_bilinear(shape):
    images = np.random.default_rng(3).random(shape, dtype=np.float32)
    ours = np.asarray(fid_preprocess(images))
    theirs = F.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2), size=(299, 299), mode="bilinear", align_corners=False)
    theirs = 2.0 * theirs.permute(0, 2, 3, 1).numpy() - 1.0
    assert ours.shape == (shape[0], 299, 299, 3)
    np.testing.assert_allclose(ours, theirs, atol=2e-6)


def test_preprocess_without_resize_only_rescales():
    images = np.random.default_rng(4).random((1, SIZE, SIZE + 3, 3), dtype=np.float32)
    out = np.asarray(fid_preprocess(images, resize=False))
    np.testing.assert_allclose(out, 2.0 * images - 1.0, atol=1e-7)


def test_missing_weights_file_explains_where_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_inception_params(tmp_path / "nope.safetensors")
    message = str(info.value)
    assert FID_WEIGHTS_FILENAME in message and "pytorch-fid" in message
    assert "not shipped" in message and "genjax.metrics.convert_inception" in message


def test_bad_keys_are_named(reference, tmp_path):
    state = dict(reference["state"])
    missing = {k: v for k, v in state.items() if k != "Mixed_6c.branch7x7_2.bn.running_var"}
    with pytest.raises(ValueError, match=r"missing keys: Mixed_6c\.branch7x7_2\.bn\.running_var"):
        inception_variables_from_state_dict(missing)
    extra = state | {"AuxLogits.fc.weight": np.zeros((1000, 768), np.float32)}
    with pytest.raises(ValueError, match=r"unexpected keys: AuxLogits\.fc\.weight.*auxiliary"):
        inception_variables_from_state_dict(extra)
    wrong = state | {"fc.weight": np.zeros((1000, 2048), np.float32)}
    with pytest.raises(ValueError, match=r"fc\.weight \(expected \(1008, 2048\), got \(1000, 2048\)\)"):
        inception_variables_from_state_dict(wrong)
    nan = state | {"Mixed_7c.branch_pool.bn.weight": np.full((192,), np.nan, np.float32)}
    with pytest.raises(ValueError, match=r"Mixed_7c\.branch_pool\.bn\.weight"):
        inception_variables_from_state_dict(nan)
    # Through a file too.
    np.savez(tmp_path / "missing.npz", **missing)
    with pytest.raises(ValueError, match=r"Mixed_6c\.branch7x7_2\.bn\.running_var"):
        load_inception_params(tmp_path / "missing.npz")
    (tmp_path / "weights.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="convert_inception"):
        load_inception_params(tmp_path / "weights.pth")


def test_converter_round_trip(reference, tmp_path):
    pth = tmp_path / "twin.pth"
    torch.save(reference["model"].state_dict(), pth)
    out = tmp_path / "twin.npz"
    assert convert_main([str(pth), str(out)]) == 0
    loaded = load_inception_params(out)
    jax.tree.map(np.testing.assert_array_equal, loaded, reference["variables"])
    with pytest.raises(ValueError, match="out_path"):
        convert_main([str(pth), str(tmp_path / "twin.bin")])


def test_input_validation(reference):
    variables = reference["variables"]
    model = FIDInceptionV3()
    with pytest.raises(ValueError, match=r"images: expected an NHWC batch \[B, H, W, 3\].*\(2, 32, 32, 1\)"):
        jax.eval_shape(model.apply, variables, jax.ShapeDtypeStruct((2, 32, 32, 1), jnp.float32))
    with pytest.raises(ValueError, match="images: expected an NHWC"):
        jax.eval_shape(model.apply, variables, jax.ShapeDtypeStruct((32, 32, 3), jnp.float32))
    with pytest.raises(ValueError, match="dtype uint8"):
        jax.eval_shape(model.apply, variables, jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.uint8))
    with pytest.raises(ValueError, match=r"H and W >= 75, got 74x80"):
        jax.eval_shape(FIDInceptionV3(resize_input=False).apply, variables, jax.ShapeDtypeStruct((1, 74, 80, 3), jnp.float32))
    images = reference["images"]
    with pytest.raises(ValueError, match=r"images: expected finite values in \[0, 1\]"):
        inception_outputs(variables, 2.0 * images - 1.0, resize=False)
    with pytest.raises(ValueError, match="images: expected finite values"):
        inception_outputs(variables, np.where(images > 0.5, np.nan, images), resize=False)
    with pytest.raises(ValueError, match="batch_size"):
        inception_outputs(variables, images, batch_size=0, resize=False)
    with pytest.raises(ValueError, match="variables"):
        inception_outputs(variables["params"], images, resize=False)
    with pytest.raises(ValueError, match="at least one image"):
        inception_outputs(variables, images[:0], resize=False)
