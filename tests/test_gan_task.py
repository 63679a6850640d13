"""The GAN family end to end: configs, CLI training, evaluation, figures and experiments."""

import importlib.util
import json
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from genjax import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOY_CONFIG = str(ROOT / "experiments" / "wgan_gp_toy" / "config.py")
MNIST_CONFIG = str(ROOT / "experiments" / "gan_mnist" / "config.py")
CIFAR_CONFIG = str(ROOT / "experiments" / "wgan_gp_cifar10" / "config.py")


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """One tiny convolutional WGAN-GP run on generated 28x28 images, shared below."""
    workdir = tmp_path_factory.mktemp("gan_tiny")
    assert cli.main(["train", "--config", f"{MNIST_CONFIG}:tiny", "--workdir", str(workdir)]) == 0
    return workdir


def test_tiny_mnist_run_writes_every_output(mnist_run):
    for name in ("samples.png", "interpolations.png", "eval.json", "metrics.jsonl", "config.json"):
        assert (mnist_run / name).is_file(), name
    result = json.loads((mnist_run / "eval.json").read_text())
    assert result["step"] == 4 and result["parzen_samples"] == 64 and result["parzen_test_examples"] == 64
    assert np.isfinite(result["parzen_log_likelihood"]) and result["parzen_stderr"] > 0
    assert np.isfinite(result["heldout_wasserstein"])
    logged = [json.loads(line) for line in (mnist_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [2, 4]
    assert {"loss", "critic_loss", "generator_loss", "gradient_penalty", "wasserstein", "step_time_s"} <= set(logged[-1])


def test_genjax_sample_gives_images_in_unit_range(mnist_run, tmp_path, capsys):
    out = tmp_path / "s.npz"
    assert cli.main(["sample", "--config", f"{MNIST_CONFIG}:tiny", "--workdir", str(mnist_run), "--num", "5", "--out", str(out)]) == 0
    images = np.load(out)["images"]
    assert images.shape == (5, 28, 28, 1) and images.min() >= 0.0 and images.max() <= 1.0
    assert out.with_suffix(".png").is_file()


def test_resuming_with_a_changed_game_is_refused(mnist_run, capsys):
    args = ["train", "--config", f"{MNIST_CONFIG}:tiny", "--workdir", str(mnist_run), "--config.model.gp_weight=1.0"]
    assert cli.main(args) == 1
    assert "model.gp_weight: 10.0 -> 1.0" in capsys.readouterr().err


def test_toy_run_writes_metrics_and_critic_surface(tmp_path):
    workdir = tmp_path / "toy"
    assert cli.main(["train", "--config", f"{TOY_CONFIG}:tiny", "--workdir", str(workdir), "--config.parallel=pmap"]) == 0
    result = json.loads((workdir / "eval.json").read_text())
    assert result["num_modes"] == 8 and 0 <= result["modes_covered"] <= 8
    assert 0.0 <= result["high_quality_fraction"] <= 1.0 and result["sliced_wasserstein"] > 0
    assert (workdir / "critic_surface.png").is_file() and (workdir / "samples.png").is_file()


def test_wgan_gp_cifar10_resnet_preset(capsys):
    assert cli.main(["info", "--config", CIFAR_CONFIG]) == 0
    info = json.loads(capsys.readouterr().out)
    # ResNet generator 1,204,483 + critic 1,053,825 parameters at 128 channels.
    assert info["num_params"] == 1_204_483 + 1_053_825
    model, train = info["config"]["model"], info["config"]["train"]
    assert (model["architecture"], model["features"], model["n_critic"], model["gp_weight"]) == ("resnet", 128, 5, 10.0)
    assert (train["batch_size"], train["learning_rate"], train["b1"], train["b2"], train["schedule"]) == (64, 2e-4, 0.0, 0.9, "linear")


def test_wgan_gp_cifar10_smoke_on_tfds_mock_data(tmp_path, mock_cifar10):
    """The ResNet preset, narrowed, through the real tfds loader on mock records."""
    with mock_cifar10(40):
        assert cli.main(["train", "--config", f"{CIFAR_CONFIG}:smoke", "--workdir", str(tmp_path / "run")]) == 0
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert result["step"] == 2 and np.isfinite(result["heldout_wasserstein"])
    assert "parzen_log_likelihood" not in result


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.model.n_critic=0", "n_critic: expected a positive int, got 0"),
        ("--config.model.gp_weight=-1.0", "gp_weight (lambda): expected a positive finite float"),
        ("--config.train.ema_decay=0.99", "train.ema_decay: the GAN family keeps no parameter average"),
        ("--config.model.architecture=dcgan", "model.architecture: toy 2D data needs 'mlp'"),
        ("--config.train.batch_size=12", "divisible by the device count"),
    ],
)
def test_bad_gan_configs_give_one_line(override, message, capsys, tmp_path):
    args = ["train", "--config", f"{TOY_CONFIG}:tiny", "--workdir", str(tmp_path / "w"), override]
    if "batch_size" in override:
        args.append("--config.parallel=pmap")
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_toy_experiment_script_writes_results(tmp_path):
    spec = importlib.util.spec_from_file_location("wgan_gp_toy_run", ROOT / "experiments" / "wgan_gp_toy" / "run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    args = [
        "--tiny",
        "--workdir",
        str(tmp_path / "runs"),
        "--out",
        str(tmp_path / "out"),
        "--datasets",
        "eight_gaussians,swiss_roll",
        "--objectives",
        "wgan_gp",
    ]
    assert run.main(args) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert result["wall_time_s"] > 0 and "run.py" in result["command"]
    keys = {(r["dataset"], r["model"], r["metric"]) for r in result["rows"]}
    assert ("eight_gaussians", "WGAN-GP", "modes_covered") in keys and ("swiss_roll", "WGAN-GP", "sliced_wasserstein") in keys
    assert ("swiss_roll", "WGAN-GP", "modes_covered") not in keys and ("swiss_roll", "fresh data (noise floor)", "sliced_wasserstein") in keys
    assert all(set(r) == {"dataset", "model", "metric", "value", "stderr"} for r in result["rows"])
    assert (tmp_path / "out" / "critic_surfaces.png").is_file() and (tmp_path / "out" / "samples.png").is_file()


def test_critic_schedule_follows_the_generator_step():
    """Linear decay: the critic's rate at its update n_critic * s equals the generator's at s."""
    from genjax.experiment import load_config_file
    from genjax.experiment.gan import build_optimizers

    config = load_config_file(f"{CIFAR_CONFIG}:smoke")
    with config.unlocked():
        config.train.optimizer = "sgd"
        config.train.decay_steps = 10
    opts = build_optimizers(config)
    n_critic = config.model.n_critic

    def rates(opt, num):
        state, out = opt.init(jnp.zeros(())), []
        for _ in range(num):
            updates, state = opt.update(jnp.ones(()), state)
            out.append(-float(updates))
        return np.array(out)

    g_rates, c_rates = rates(opts["generator"], 10), rates(opts["critic"], 10 * n_critic)
    np.testing.assert_allclose(c_rates[::n_critic], g_rates, rtol=1e-6)
    np.testing.assert_allclose(g_rates[[0, 5]], [2e-4, 1e-4], rtol=1e-6)


@pytest.mark.parametrize(
    "config, override, message",
    [
        (CIFAR_CONFIG + ":smoke", "--config.model.norm=layer", "model.norm: the ResNet critic has no normalisation"),
        (MNIST_CONFIG + ":tiny", "--config.data.binarize=dynamic", "data.binarize: the GAN family trains on grey levels"),
        (MNIST_CONFIG + ":tiny", "--config.eval.valid_split=train", "eval.valid_split: Parzen's sigma must be chosen on data apart"),
        (MNIST_CONFIG + ":tiny", "--config.train.critic_learning_rate=-1.0", "train.critic_learning_rate: expected 0"),
    ],
)
def test_config_fields_that_would_be_ignored_are_refused(config, override, message, capsys):
    assert cli.main(["info", "--config", config, override]) == 1
    assert message in capsys.readouterr().err


def test_mnist_report_collects_runs(mnist_run, tmp_path):
    spec = importlib.util.spec_from_file_location("gan_mnist_report", ROOT / "experiments" / "gan_mnist" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    assert report.main(["--runs", str(mnist_run), "--out", str(tmp_path), "--reference", "64", "--fd-samples", "64"]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    ev = json.loads((mnist_run / "eval.json").read_text())
    reference = "64 real training images (reference)"
    assert [(r["model"], r["metric"]) for r in result["rows"]] == [
        ("WGAN-GP", "parzen_log_likelihood_nats"),
        ("WGAN-GP", "classifier_frechet_distance"),
        (reference, "parzen_log_likelihood_nats"),
        (reference, "classifier_frechet_distance"),
        ("GAN, Goodfellow et al. Table 1", "parzen_log_likelihood_nats"),
    ]
    assert result["rows"][0]["value"] == ev["parzen_log_likelihood"] and result["rows"][0]["stderr"] == ev["parzen_stderr"]
    assert result["rows"][1]["value"] > 0 and result["rows"][3]["value"] > 0
    assert all(set(r) == {"dataset", "model", "metric", "value", "stderr"} for r in result["rows"])
    for name in ("samples.png", "training_curves.png", "table.md"):
        assert (tmp_path / name).is_file(), name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--runs", "no_such_workdir"], "workdir: no folder 'no_such_workdir'"),
        (["--runs", "x", "--fd-samples", "1"], "--fd-samples: expected at least 2"),
        (["--runs", "x", "--reference", "-1"], "--reference: expected 0"),
    ],
)
def test_mnist_report_bad_input_is_one_line(args, message, capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("gan_mnist_report", ROOT / "experiments" / "gan_mnist" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    with pytest.raises(SystemExit) as info:
        report.main([*args, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and "Traceback" not in err
