"""Latent diffusion: the autoencoder objective against its closed form, the latent scale,
and the autoencoder_kl -> ldm pipeline from the command line."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import cli
from genjax.distributions import standard_normal_kl
from genjax.models import latent


class _Linear(nn.Module):
    """A stand-in autoencoder with a closed-form posterior: mean = a x, logvar = b,
    decode(z) = z / a (so the posterior mean decodes to x exactly)."""

    def setup(self):
        self.a = self.param("a", lambda k: jnp.float32(2.0))
        self.b = self.param("b", lambda k: jnp.float32(-3.0))

    def encode(self, x):
        return self.a * x, jnp.full_like(x, self.b)

    def decode(self, z):
        return z / self.a

    def __call__(self, x):
        return self.decode(self.encode(x)[0])


MODULE = _Linear()
PARAMS = MODULE.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))


@pytest.mark.parametrize("reconstruction", ["l1", "l2"])
def test_the_autoencoder_objective_is_its_closed_form(reconstruction):
    x = jax.random.uniform(jax.random.key(1), (4, 4, 1), minval=-1, maxval=1)
    key = jax.random.key(2)
    terms = latent.example_loss(MODULE, PARAMS, x, key, kl_weight=0.3, reconstruction=reconstruction)
    eps = jax.random.normal(jax.random.fold_in(key, latent.LATENT_NOISE_SALT), (1, 4, 4, 1))
    # decode(a x + exp(b / 2) eps) - x = exp(b / 2) eps / a
    err = np.exp(-1.5) * np.asarray(eps[0]) / 2.0
    rec = np.abs(err).sum() if reconstruction == "l1" else (err**2).sum()
    kl = np.asarray(standard_normal_kl(2.0 * x, -3.0)).sum()
    np.testing.assert_allclose(terms.reconstruction, rec, rtol=1e-5)
    np.testing.assert_allclose(terms.kl, kl, rtol=1e-5)
    np.testing.assert_allclose(terms.loss, rec + 0.3 * kl, rtol=1e-5)
    np.testing.assert_allclose(terms.mse, (err**2).mean(), rtol=1e-5)


def test_latents_are_scaled_posterior_samples_and_the_scale_gives_unit_variance():
    x = jax.random.uniform(jax.random.key(1), (64, 4, 4, 1), minval=-1, maxval=1)
    ks = jax.random.split(jax.random.key(5), 64)
    np.testing.assert_allclose(latent.encode_latents(MODULE, PARAMS, x, None, 0.5), x, rtol=1e-6)
    z = latent.encode_latents(MODULE, PARAMS, x, ks, 1.0)
    eps = (np.asarray(z) - 2.0 * np.asarray(x)) / np.exp(-1.5)
    assert abs(eps.mean()) < 0.1 and abs(eps.std() - 1.0) < 0.05
    scale = latent.scale_factor(z)
    assert float(jnp.std(scale * z)) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(latent.decode_latents(MODULE, PARAMS, latent.encode_latents(MODULE, PARAMS, x, None, scale), scale), x, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="latents: cannot estimate a scale factor"):
        latent.scale_factor(jnp.ones((4, 2)))


def test_bad_objective_arguments():
    with pytest.raises(ValueError, match="kl_weight: expected a finite non-negative float"):
        latent.make_loss(MODULE, kl_weight=-1.0)
    with pytest.raises(ValueError, match="reconstruction: expected one of"):
        latent.make_loss(MODULE, kl_weight=1.0, reconstruction="lpips")


CONFIG = "experiments/latent_mnist/config.py"


@pytest.fixture(scope="module")
def autoencoder_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ae")
    assert cli.main(["train", "--config", f"{CONFIG}:autoencoder_tiny", "--workdir", str(workdir)]) == 0
    return workdir


def test_the_autoencoder_trains_and_reports_its_latents(autoencoder_run):
    result = json.loads((autoencoder_run / "eval.json").read_text())
    assert result["test_kl"] > 0 and result["test_reconstruction"] > 0 and np.isfinite(result["test_psnr_db"])
    assert result["scale_factor_estimate"] == pytest.approx(1.0 / result["test_latent_std"], rel=1e-5)
    assert (autoencoder_run / "reconstructions.png").is_file()


def test_latent_diffusion_trains_on_the_frozen_autoencoder_and_decodes(autoencoder_run, tmp_path, capsys):
    workdir = tmp_path / "ldm"
    args = ["--config", f"{CONFIG}:ldm_tiny", "--workdir", str(workdir), f"--config.model.autoencoder={autoencoder_run}"]
    assert cli.main(["train", *args]) == 0
    capsys.readouterr()
    result = json.loads((workdir / "eval.json").read_text())
    assert result["scale_factor"] > 0 and result["autoencoder_step"] == 4 and np.isfinite(result["test_latent_vlb_estimate_bpd"])
    assert "test_bits_per_dim" not in result
    assert cli.main(["sample", "--workdir", str(workdir), "--num", "3", "--out", str(tmp_path)]) == 0
    images = np.load(json.loads(capsys.readouterr().out)["npz"])["images"]
    assert images.shape == (3, 8, 8, 1) and np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
    # The estimated scale is a pure function of the seed and the autoencoder.
    from genjax.experiment import load_config
    from genjax.experiment.families import build

    config = load_config(f"{CONFIG}:ldm_tiny", [f"model.autoencoder={autoencoder_run}"])
    assert build(config).model.codec.info["scale_factor"] == result["scale_factor"]


def test_the_ddpm_family_takes_the_sd_unet_conditioned_on_a_label_context():
    from genjax.experiment import load_config
    from genjax.experiment.families import build

    config = load_config("experiments/ddpm_mnist/config.py:tiny", ["model.network=sd_unet_tiny", "model.num_classes=10", "model.parameterization=v"])
    experiment = build(config)
    params = experiment.init(jax.random.key(0))
    h, w, c = experiment.model.image_shape
    assert params["params"]["label_embedding"]["embedding"].shape == (11, 16)  # 10 digits and the null label
    assert params["params"]["unet"]["conv_in"]["kernel"].shape == (3, 3, c, 32)
    x = jax.random.normal(jax.random.key(1), (2, h, w, c))
    t = jnp.array([3, 7])
    apply = jax.jit(experiment.model.apply, static_argnums=3)
    out = apply(params, x, t, None, jnp.array([1, 1]))
    assert out.shape == (2, h, w, c) and np.isfinite(out).all()
    # The label reaches the output through cross-attention once the context rows differ.
    table = params["params"]["label_embedding"]["embedding"]
    params["params"]["label_embedding"]["embedding"] = table.at[2].set(table[1] + 1.0)
    assert not np.allclose(apply(params, x, t, None, jnp.array([2, 2])), apply(params, x, t, None, jnp.array([1, 1])))


def test_genjax_info_reports_stable_diffusion_v15_as_diffusers_builds_it(capsys):
    # tests/test_sd_nets.py checks these counts against diffusers' own models.
    counts = {}
    for preset in ("vae", "unet"):
        assert cli.main(["info", "--config", f"experiments/stable_diffusion/config.py:{preset}"]) == 0
        counts[preset] = json.loads(capsys.readouterr().out)
    assert counts["vae"]["num_params"] == 83_653_863
    assert counts["unet"]["num_params_by_module"] == {"unet": 859_520_964, "label_embedding": 768}
    assert counts["unet"]["num_params"] == 859_520_964 + 768


def test_a_network_that_does_not_exist_is_named(tmp_path, capsys):
    args = ["info", "--config", "experiments/stable_diffusion/config.py:unet", "--config.model.network=sd21_unet"]
    assert cli.main(args) in (1, 2)
    err = capsys.readouterr().err
    assert "model.network: expected 'unet' or one of ['sd15_unet', 'sd_unet_tiny'], got 'sd21_unet'" in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("--config.model.autoencoder=", "model.autoencoder: expected the workdir of a trained autoencoder_kl run, got ''"),
        ("--config.model.autoencoder=/nonexistent/ae", "model.autoencoder: no config.json in '/nonexistent/ae'"),
        ("--config.model.scale_factor=-1.0", "model.scale_factor: expected 0 (estimate from data) or a positive float, got -1.0"),
        ("--config.eval.bpd_examples=4", "eval.bpd_examples: the bits/dim bound needs pixel-space data"),
        ("--config.data.image_shape=(16,16,1)", "was trained on images of shape (8, 8, 1), but data.image_shape is (16, 16, 1)"),
    ],
)
def test_a_bad_autoencoder_reference_is_one_line(override, message, autoencoder_run, tmp_path, capsys):
    args = ["train", "--config", f"{CONFIG}:ldm_tiny", "--workdir", str(tmp_path / "w"), f"--config.model.autoencoder={autoencoder_run}", override]
    assert cli.main(args) in (1, 2)
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_an_ldm_refuses_a_run_of_another_family(tmp_path, capsys):
    from genjax.experiment import load_config
    from genjax.experiment.run import resolved

    ddpm_run = tmp_path / "ddpm"
    ddpm_run.mkdir()
    (ddpm_run / "config.json").write_text(json.dumps(resolved(load_config("experiments/ddpm_mnist/config.py:tiny"))))
    args = ["train", "--config", f"{CONFIG}:ldm_tiny", "--workdir", str(tmp_path / "w"), f"--config.model.autoencoder={ddpm_run}"]
    assert cli.main(args) == 1
    assert f"model.autoencoder: '{ddpm_run}' is a 'ddpm' run, expected an 'autoencoder_kl' run" in capsys.readouterr().err
