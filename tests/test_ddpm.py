"""The DDPM family end to end: configs, training, evaluation and `genjax sample`."""

import importlib.util
import json
import pathlib
import re

import jax
import numpy as np
import pytest

from genjax import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
MNIST_CONFIG = str(ROOT / "experiments" / "ddpm_mnist" / "config.py")
CIFAR_CONFIG = str(ROOT / "experiments" / "ddpm_cifar10" / "config.py")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny DDPM run shared by the tests below (training compiles slowly on CPU)."""
    workdir = tmp_path_factory.mktemp("ddpm_tiny")
    assert cli.main(["train", "--config", f"{MNIST_CONFIG}:tiny", "--workdir", str(workdir)]) == 0
    return workdir


def test_ddpm_cifar10_preset_has_the_papers_parameter_count(capsys):
    assert cli.main(["info", "--config", CIFAR_CONFIG]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_params"] == 35_746_307
    model = info["config"]["model"]
    assert (model["ch"], tuple(model["ch_mult"]), model["num_res_blocks"], tuple(model["attn_resolutions"])) == (128, (1, 2, 2, 2), 2, (16,))
    train = info["config"]["train"]
    assert (train["batch_size"], train["learning_rate"], train["warmup_steps"], train["grad_clip"], train["ema_decay"], train["num_steps"]) == (
        128,
        2e-4,
        5000,
        1.0,
        0.9999,
        800_000,
    )
    assert info["config"]["data"]["random_flip"] is True and model["dropout"] == 0.1


def test_tiny_run_writes_every_output(tiny_run):
    for name in ("samples.png", "progressive.png", "eval.json", "metrics.jsonl", "config.json"):
        assert (tiny_run / name).is_file(), name
    result = json.loads((tiny_run / "eval.json").read_text())
    assert result["step"] == 4 and result["bpd_examples"] == 4
    # The bound is the sum of its parts: positive, with the prior and decoder terms inside it.
    assert result["test_bits_per_dim"] > result["test_bits_per_dim_decoder"] > 0
    assert result["test_bits_per_dim"] > result["test_bits_per_dim_prior"] > 0
    assert np.isfinite(result["test_bits_per_dim_stderr"])


@pytest.mark.parametrize("sampler, steps", [("heun", 3)])
def test_genjax_sample_writes_npz_and_grid(tiny_run, tmp_path, capsys, sampler, steps):
    out = tmp_path / f"{sampler}.npz"
    args = [
        "sample",
        "--config",
        f"{MNIST_CONFIG}:tiny",
        "--workdir",
        str(tiny_run),
        "--num",
        "3",
        "--sampler",
        sampler,
        "--steps",
        str(steps),
        "--out",
        str(out),
    ]
    assert cli.main(args) == 0
    images = np.load(out)["images"]
    assert images.shape == (3, 8, 8, 1) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert out.with_suffix(".png").is_file()
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["num"] == 3


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--sampler", "euler"], "eval.sampler: expected one of"),
        (["--sampler", "ddim", "--steps", "21"], r"eval.sampler_steps: expected an int in \[1, 20\]"),
        (["--steps", "0"], "sampler_steps"),
    ],
)
def test_genjax_sample_rejects_bad_sampler_flags(tiny_run, capsys, flags, message):
    args = ["sample", "--config", f"{MNIST_CONFIG}:tiny", "--workdir", str(tiny_run), "--num", "2", *flags]
    assert cli.main(args) == 1
    assert re.search(message, capsys.readouterr().err)


def test_sampler_flags_are_refused_for_families_without_samplers(tmp_path, capsys):
    vae = str(ROOT / "experiments" / "vae_mnist" / "config.py")
    assert cli.main(["sample", "--config", f"{vae}:tiny", "--workdir", str(tmp_path), "--sampler", "ddim"]) == 1
    assert "--sampler: the model family 'vae' has no diffusion sampler" in capsys.readouterr().err


def test_image_shape_the_unet_cannot_halve_is_refused(tmp_path, capsys):
    args = [
        "train",
        "--config",
        f"{MNIST_CONFIG}:tiny",
        "--workdir",
        str(tmp_path),
        "--config.data.image_shape=(10, 10, 1)",
        "--config.model.ch_mult=(1, 2, 2)",
    ]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "x: image height and width must be multiples of 2**(len(ch_mult) - 1) = 4" in err, err


def test_ddpm_cifar10_smoke_on_tfds_mock_data(tmp_path, mock_cifar10):
    """The paper's CIFAR-10 config, narrowed, through the real tfds loader on mock records."""
    with mock_cifar10(16):
        args = ["train", "--config", f"{CIFAR_CONFIG}:smoke", "--workdir", str(tmp_path / "run")]
        assert cli.main(args) == 0
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert result["step"] == 2 and np.isfinite(result["test_vlb_estimate_bpd"]) and np.isfinite(result["test_mse"])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["name"] == "cifar10" and config["data"]["source"] == "tfds" and config["train"]["ema_decay"] == 0.9999


@pytest.fixture(scope="module")
def tiny28_run(tmp_path_factory):
    """The tiny preset at MNIST's 28x28x1, the shape the report's classifier needs."""
    workdir = tmp_path_factory.mktemp("ddpm_tiny28")
    overrides = [
        "--config.data.image_shape=(28, 28, 1)",
        "--config.model.attn_resolutions=(14,)",
        "--config.train.num_steps=2",
        "--config.eval.num_grid=2",
        "--config.eval.progressive_rows=1",
    ]
    assert cli.main(["train", "--config", f"{MNIST_CONFIG}:tiny", "--workdir", str(workdir), *overrides]) == 0
    return workdir


def _load_mnist_report():
    spec = importlib.util.spec_from_file_location("ddpm_mnist_report", ROOT / "experiments" / "ddpm_mnist" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    return report


def test_mnist_report_scores_every_sampler(tiny28_run, tmp_path):
    report = _load_mnist_report()
    assert report.main(["--workdir", str(tiny28_run), "--out", str(tmp_path), "--steps", "2", "--fd-samples", "300", "--batch", "150", "--num", "2"]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["metrics"]["test_bits_per_dim"] == json.loads((tiny28_run / "eval.json").read_text())["test_bits_per_dim"]
    rows = [(r["sampler"], r.get("clip_x0", False), r["steps"]) for r in result["samplers"]]
    assert rows == [
        ("ddpm", False, 2),
        ("ddpm", False, 2),
        ("ddim", False, 2),
        ("dpmpp_2m", False, 2),
        ("dpmpp_2m", True, 2),
        ("heun", False, 2),
        ("heun", True, 2),
    ]
    assert [r["evals_per_image"] for r in result["samplers"] if r["sampler"] == "heun"] == [3, 3]
    distances = [r["classifier_frechet_distance"] for r in result["samplers"]]
    reference = result["fd_reference"]["classifier_frechet_distance"]
    # A two-step model's samples are far from its (synthetic) data; real training images are not.
    assert all(np.isfinite(distances)) and min(distances) > reference > 0
    for name in ("sampler_grid.png", "fd_vs_steps.png", "sampler_samples.npz"):
        assert (tmp_path / name).is_file(), name
    samples = np.load(tmp_path / "sampler_samples.npz")
    assert len(samples.files) == 7 and samples["0_ddpm_2"].shape == (2, 28, 28, 1)
    # Quantised to 8 bits, as an image file holds them.
    np.testing.assert_allclose(samples["0_ddpm_2"] * 255, np.round(samples["0_ddpm_2"] * 255), atol=1e-4)
    assert result["wall_time_s"] > 0


def test_mnist_report_draws_the_same_noises_in_every_chunk_size():
    report = _load_mnist_report()
    calls = []

    def sample_fn(key):
        calls.append(key)
        return jax.random.uniform(key, (4, 2), minval=-1.0, maxval=1.0)

    images = report.draw(sample_fn, jax.random.key(0), 6, 4)
    assert images.shape == (6, 2) and len(calls) == 2
    np.testing.assert_array_equal(images[:4], report.draw(sample_fn, jax.random.key(0), 4, 4))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fd-samples", "1"], "--fd-samples: expected at least 2"),
        (["--batch", "0"], "--batch: expected a positive"),
        (["--num", "20", "--fd-samples", "10"], "--num: expected between 1 and --fd-samples"),
        (["--steps", "10,x"], "expected comma-separated positive ints"),
        (["--steps", "0"], "expected comma-separated positive ints"),
    ],
)
def test_mnist_report_rejects_bad_arguments(args, message, tmp_path, capsys):
    report = _load_mnist_report()
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--workdir", str(tmp_path), "--out", str(tmp_path), *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_mnist_report_names_a_missing_run(tmp_path, capsys):
    report = _load_mnist_report()
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--workdir", str(tmp_path / "absent"), "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "absent" in capsys.readouterr().err
