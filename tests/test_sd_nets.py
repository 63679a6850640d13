"""Stable Diffusion's networks (genjax.nn.sd) against diffusers: forward parity, weight import/export, sizes, errors."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import jax
import jax.numpy as jnp
from flax import traverse_util

from genjax.nn import sd, sd_import
from genjax.nn.sd import AutoencoderKL

TOL = 1e-5

# Tiny configs in diffusers' config.json form: every option genjax maps is exercised
# somewhere (per-level heads, two layers per block, linear projections, scale-shift
# time embedding, the SD VAE's bottom/right padding).
UNET_CONFIG = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 3,
    "block_out_channels": [16, 32],
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "layers_per_block": 2,
    "norm_num_groups": 8,
    "cross_attention_dim": 12,
    "attention_head_dim": [2, 4],
    "use_linear_projection": True,
    "resnet_time_scale_shift": "scale_shift",
    "flip_sin_to_cos": False,
    "freq_shift": 1,
}
VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": [16, 32],
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 8,
}


def _randomize(model, seed):
    """Non-zero random values in every parameter (norm scales and biases included)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _state(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def _nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def _max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@pytest.fixture(scope="module")
def vae():
    torch_model = _randomize(diffusers.AutoencoderKL(**VAE_CONFIG), seed=0)
    module = sd_import.autoencoder_kl_from_diffusers_config(VAE_CONFIG)
    params = sd_import.sd_params_from_diffusers(_state(torch_model), module)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    z = rng.normal(size=(2, 4, 4, 4)).astype(np.float32)
    encode = jax.jit(lambda p, x: module.apply(p, x, method=AutoencoderKL.encode))
    decode = jax.jit(lambda p, z: module.apply(p, z, method=AutoencoderKL.decode))
    return torch_model, module, params, x, z, encode, decode


@pytest.fixture(scope="module")
def unet():
    torch_model = _randomize(diffusers.UNet2DConditionModel(**UNET_CONFIG), seed=1)
    module = sd_import.sd_unet_from_diffusers_config(UNET_CONFIG)
    params = sd_import.sd_params_from_diffusers(_state(torch_model), module)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 8, 8, 4)).astype(np.float32)
    t = np.array([3.0, 917.0], np.float32)
    ctx = rng.normal(size=(2, 5, 12)).astype(np.float32)
    apply = jax.jit(module.apply)
    return torch_model, module, params, (x, t, ctx), apply


def _torch_vae(model, x, z):
    with torch.no_grad():
        posterior = model.encode(_nchw(x)).latent_dist
        return _nhwc(posterior.mean), _nhwc(posterior.logvar), _nhwc(model.decode(_nchw(z)).sample)


def _torch_unet(model, inputs):
    x, t, ctx = inputs
    with torch.no_grad():
        return _nhwc(model(_nchw(x), torch.from_numpy(t), encoder_hidden_states=torch.from_numpy(ctx)).sample)


def test_autoencoder_kl_matches_diffusers(vae):
    torch_model, module, params, x, z, encode, decode = vae
    mean, logvar = encode(params, x)
    assert mean.shape == logvar.shape == (2, 4, 4, 4)
    ref_mean, ref_logvar, ref_x = _torch_vae(torch_model, x, z)
    assert _max_diff(mean, ref_mean) < TOL
    assert _max_diff(logvar, ref_logvar) < TOL
    out = decode(params, z)
    assert out.shape == (2, 8, 8, 3)
    assert _max_diff(out, ref_x) < TOL
    # __call__ without a key decodes the posterior mean.
    np.testing.assert_allclose(module.apply(params, x), decode(params, mean), atol=TOL)
    assert np.std(ref_x) > 0.05 and np.std(ref_mean) > 0.05  # the comparison is not between near-constants


def test_unet_matches_diffusers(unet):
    torch_model, _, params, inputs, apply = unet
    out = apply(params, *inputs)
    ref = _torch_unet(torch_model, inputs)
    assert out.shape == (2, 8, 8, 3)
    assert np.std(ref) > 0.05
    assert _max_diff(out, ref) < TOL


def test_sd_unet_tiny_preset_matches_diffusers():
    # The Stable Diffusion v1 options: 1x1-conv projections, additive time embedding, [cos | sin] features.
    module = sd.sd_unet_tiny()
    config = {k: v for k, v in sd_import.diffusers_config(module).items() if not k.startswith("_")}
    torch_model = _randomize(diffusers.UNet2DConditionModel(**config), seed=2)
    params = sd_import.sd_params_from_diffusers(_state(torch_model), module)
    rng = np.random.default_rng(2)
    inputs = (rng.normal(size=(1, 8, 8, 4)).astype(np.float32), np.array([421.0], np.float32), rng.normal(size=(1, 3, 16)).astype(np.float32))
    ref = _torch_unet(torch_model, inputs)
    assert np.std(ref) > 0.05
    assert _max_diff(jax.jit(module.apply)(params, *inputs), ref) < TOL


def _assert_bitwise(a, b):
    fa, fb = traverse_util.flatten_dict(a), traverse_util.flatten_dict(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        assert fa[k].dtype == fb[k].dtype and np.array_equal(np.asarray(fa[k]), np.asarray(fb[k])), k


def test_autoencoder_kl_export_round_trip(vae, tmp_path):
    _, module, params, x, z, encode, decode = vae
    sd_import.save_diffusers(tmp_path / "vae", module, params)
    loaded_module, loaded = sd_import.load_diffusers_autoencoder_kl(tmp_path)  # a pipeline folder's vae/
    assert loaded_module == module
    _assert_bitwise(loaded, params)
    reopened = diffusers.AutoencoderKL.from_pretrained(tmp_path / "vae").eval()
    ref_mean, ref_logvar, ref_x = _torch_vae(reopened, x, z)
    mean, logvar = encode(params, x)
    assert _max_diff(mean, ref_mean) < TOL and _max_diff(logvar, ref_logvar) < TOL
    assert _max_diff(decode(params, z), ref_x) < TOL
    assert reopened.config.scaling_factor == module.scaling_factor


def test_unet_export_round_trip(unet, tmp_path):
    _, module, params, inputs, apply = unet
    sd_import.save_diffusers(tmp_path, module, params)
    loaded_module, loaded = sd_import.load_diffusers_sd_unet(tmp_path)
    assert loaded_module == module
    _assert_bitwise(loaded, params)
    reopened = diffusers.UNet2DConditionModel.from_pretrained(tmp_path).eval()
    assert _max_diff(apply(params, *inputs), _torch_unet(reopened, inputs)) < TOL


def test_presets_are_their_diffusers_configs():
    assert sd_import.sd_unet_from_diffusers_config(sd_import.SD15_UNET_CONFIG) == sd.sd15_unet()
    assert sd_import.autoencoder_kl_from_diffusers_config(sd_import.SD15_VAE_CONFIG) == sd.sd15_vae()
    for preset in (sd.sd_unet_tiny(), sd.sd_vae_tiny(), sd.sd15_unet(), sd.sd15_vae()):
        config = json.loads(json.dumps(sd_import.diffusers_config(preset)))
        back = sd_import.sd_unet_from_diffusers_config if isinstance(preset, sd.UNet2DConditionModel) else sd_import.autoencoder_kl_from_diffusers_config
        assert back(config) == preset


def _count(tree):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def test_sd15_parameter_counts_equal_diffusers():
    unet_config = {k: v for k, v in sd_import.SD15_UNET_CONFIG.items() if not k.startswith("_")}
    vae_config = {k: v for k, v in sd_import.SD15_VAE_CONFIG.items() if not k.startswith("_")}
    with torch.device("meta"):
        torch_unet = diffusers.UNet2DConditionModel(**unet_config)
        torch_vae = diffusers.AutoencoderKL(**vae_config)
    for preset, torch_model in ((sd.sd15_unet(), torch_unet), (sd.sd15_vae(), torch_vae)):
        reference = sd_import.reference_params(preset)
        assert _count(reference) == sum(p.numel() for p in torch_model.parameters())
        # Names and PyTorch-layout shapes agree too, tensor by tensor.
        flat = traverse_util.flatten_dict(reference["params"])
        mine = {sd_import.diffusers_key(k): sd_import._torch_shape(k, tuple(v.shape)) for k, v in flat.items()}
        assert mine == {k: tuple(v.shape) for k, v in torch_model.state_dict().items()}
    assert _count(sd_import.reference_params(sd.sd15_unet())) == 859_520_964
    assert _count(sd_import.reference_params(sd.sd15_vae())) == 83_653_863


def test_bad_state_dicts_name_the_tensor(vae):
    _, module, params, *_ = vae
    state = sd_import.sd_params_to_diffusers(params)
    missing = dict(state)
    del missing["encoder.mid_block.attentions.0.to_q.weight"]
    with pytest.raises(ValueError, match=r"missing tensor.*encoder\.mid_block\.attentions\.0\.to_q\.weight \(32, 32\)"):
        sd_import.sd_params_from_diffusers(missing, module)
    with pytest.raises(ValueError, match=r"unexpected tensor.*decoder\.extra\.weight"):
        sd_import.sd_params_from_diffusers({**state, "decoder.extra.weight": np.zeros(3, np.float32)}, module)
    wrong = {**state, "decoder.conv_in.weight": np.zeros((32, 4, 1, 1), np.float32)}
    with pytest.raises(ValueError, match=r"decoder\.conv_in\.weight: expected \(32, 4, 3, 3\), got \(32, 4, 1, 1\)"):
        sd_import.sd_params_from_diffusers(wrong, module)
    # All problems at once, in one message.
    with pytest.raises(ValueError, match=r"missing.*unexpected.*mismatch"):
        sd_import.sd_params_from_diffusers(
            {**missing, "decoder.conv_in.weight": wrong["decoder.conv_in.weight"], "decoder.extra.weight": np.zeros(3, np.float32)}, module
        )


@pytest.mark.parametrize(
    ("loader", "change", "key"),
    [
        ("vae", {"act_fn": "gelu"}, "act_fn"),
        ("vae", {"down_block_types": ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"]}, "down_block_types"),
        ("vae", {"latents_mean": [0.0] * 4}, "latents_mean"),
        ("vae", {"not_a_key": 1}, "not_a_key"),
        ("unet", {"class_embed_type": "timestep"}, "class_embed_type"),
        ("unet", {"addition_embed_type": "text_time"}, "addition_embed_type"),
        ("unet", {"up_block_types": ["UpBlock2D", "AttnUpBlock2D"]}, "up_block_types"),
        ("unet", {"resnet_time_scale_shift": "spatial"}, "resnet_time_scale_shift"),
        ("unet", {"cross_attention_dim": [12, 12]}, "cross_attention_dim"),
    ],
)
def test_unsupported_configs_name_the_key(loader, change, key):
    base = VAE_CONFIG if loader == "vae" else UNET_CONFIG
    build = sd_import.autoencoder_kl_from_diffusers_config if loader == "vae" else sd_import.sd_unet_from_diffusers_config
    with pytest.raises(ValueError, match=key) as info:
        build({**base, **change})
    value = next(iter(change.values()))
    if key != "not_a_key":
        assert repr(value)[:20] in str(info.value) or str(value)[:20] in str(info.value)


def test_save_refuses_params_of_another_model(vae, tmp_path):
    params = vae[2]
    with pytest.raises(ValueError, match=r"encoder\.conv_in\.weight: expected \(3, 3, 3, 32\), got \(3, 3, 3, 16\)"):
        sd_import.save_diffusers(tmp_path, sd.sd_vae_tiny(), params)
    assert not (tmp_path / "config.json").exists()


def test_loader_refuses_pickles_and_missing_folders(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(VAE_CONFIG))
    (tmp_path / "diffusion_pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="pickle"):
        sd_import.load_diffusers_autoencoder_kl(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        sd_import.load_diffusers_sd_unet(tmp_path / "absent")


def test_sampling_uses_the_posterior(vae):
    _, module, params, x, *_ = vae
    mean, logvar = module.apply(params, x, method=AutoencoderKL.encode)
    a = module.apply(params, x, jax.random.key(0))
    b = module.apply(params, x, jax.random.key(1))
    assert a.shape == x.shape and not np.allclose(a, b)
    assert np.all(logvar >= -30) and np.all(logvar <= 20) and mean.dtype == jnp.float32
