"""The ``genjax`` command end to end on the tiny preset, and its one-line errors."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from genjax import cli, experiment
from genjax.train import Checkpointer

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "experiments" / "vae_mnist" / "config.py")
TINY = CONFIG + ":tiny"


def _main(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny training run shared by the tests that inspect its outputs."""
    workdir = tmp_path_factory.mktemp("tiny")
    assert cli.main(["train", "--config", TINY, "--workdir", str(workdir)]) == 0
    return workdir


def test_train_writes_every_output(tiny_run):
    for name in ("metrics.jsonl", "samples.png", "eval.json", "config.json", "reconstructions.png", "manifold.png"):
        assert (tiny_run / name).is_file(), name
    records = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    assert {"loss", "elbo", "recon", "kl", "grad_norm", "param_norm", "step_time_s"} <= set(records[0])
    assert "eval_test_elbo" in records[1]
    evaluation = json.loads((tiny_run / "eval.json").read_text())
    assert evaluation["step"] == 20 and evaluation["num_examples"] == 64
    assert evaluation["test_nll_is40"] <= -evaluation["test_elbo"] + 3 * evaluation["test_elbo_stderr"]
    assert Checkpointer(tiny_run / "checkpoints").all_steps() == [10, 20]
    assert json.loads((tiny_run / "config.json").read_text())["train"]["num_steps"] == 20


def test_sample_eval_and_info(tiny_run, capsys, tmp_path):
    code, out, _ = _main(capsys, "sample", "--config", TINY, "--workdir", str(tiny_run), "--num", "9", "--out", str(tmp_path / "s.npz"))
    assert code == 0
    images = np.load(tmp_path / "s.npz")["images"]
    assert images.shape == (9, 28, 28, 1) and images.min() >= 0 and images.max() <= 1
    assert (tmp_path / "s.png").is_file()
    code, out, _ = _main(capsys, "eval", "--config", TINY, "--workdir", str(tiny_run))
    assert code == 0 and json.loads(out)["step"] == 20
    code, out, _ = _main(capsys, "info", "--config", TINY, "--config.model.latent_dim=4")
    info = json.loads(out)
    hidden, latent = 32, 4
    expected = (784 * hidden + hidden) + (hidden * 2 * latent + 2 * latent) + (latent * hidden + hidden) + (hidden * 784 + 784)
    assert info["num_params"] == expected
    assert info["config"]["model"]["latent_dim"] == 4


def test_sample_and_eval_read_the_runs_own_config_and_keep_its_samples_png(tiny_run, capsys, tmp_path):
    before = (tiny_run / "samples.png").read_bytes()
    code, out, _ = _main(capsys, "sample", "--workdir", str(tiny_run), "--num", "4")
    assert code == 0
    written = json.loads(out)
    assert written["npz"] == str(tiny_run / "samples" / "step20_n4.npz") and written["step"] == 20
    assert np.load(written["npz"])["images"].shape == (4, 28, 28, 1)
    assert (tiny_run / "samples.png").read_bytes() == before
    # The same run, number and stream give the same samples, with or without --config.
    code, out, _ = _main(capsys, "sample", "--config", TINY, "--workdir", str(tiny_run), "--num", "4", "--out", str(tiny_run / "again.npz"))
    np.testing.assert_array_equal(np.load(tiny_run / "again.npz")["images"], np.load(written["npz"])["images"])
    code, out, _ = _main(capsys, "eval", "--workdir", str(tiny_run), "--config.eval.is_samples=0")
    assert code == 0 and json.loads(out)["step"] == 20 and "test_nll_is40" not in json.loads(out)
    code, _, err = _main(capsys, "sample", "--workdir", str(tiny_run), "--out", str(tiny_run / "x.png"))
    assert code == 1 and "--out: expected a path ending in .npz" in err
    code, _, err = _main(capsys, "eval", "--workdir", str(tiny_run / "nothing"))
    assert code == 1 and "no config.json in" in err and err.count("\n") == 1
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{truncated")
    code, _, err = _main(capsys, "eval", "--workdir", str(broken))
    assert code == 1 and "config.json' is not valid JSON" in err and err.count("\n") == 1


def test_load_run_exposes_the_experiment(tiny_run):
    run = experiment.load_run(tiny_run)
    assert int(run.state.step) == 20 and run.config.model.family == "vae"
    assert run.experiment.model.latent_dim == 2
    images = run.experiment.sample(run.params, jax.random.key(0), 3)
    assert images.shape == (3, 28, 28, 1)


def test_resuming_a_finished_run_is_a_no_op(tiny_run, capsys):
    before = Checkpointer(tiny_run / "checkpoints").all_steps()
    code, _, _ = _main(capsys, "train", "--config", TINY, "--workdir", str(tiny_run))
    assert code == 0 and Checkpointer(tiny_run / "checkpoints").all_steps() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "nope/config.py"], "--config: no config file at 'nope/config.py'"),
        (["--config", TINY, "--config.train.bach_size=3"], "--config.train.bach_size: unknown override key"),
        (["--config", TINY, "--config.train.batch_size=abc"], "--config.train.batch_size: expected an int, got 'abc'"),
        (["--config", TINY, "--config.train.batch_size=0"], "batch_size"),
        (["--config", TINY, "--config.train.batch_size=-4"], "batch_size"),
        (["--config", TINY, "--config.train.batch_size=12"], "divisible by the device count 8"),
        (["--config", TINY, "--config.parallel=pmap", "--config.train.batch_size=12"], "divisible by the device count 8"),
        (["--config", TINY, "--config.data.source=offline", "--config.data.name=mnist3d"], "unknown dataset name 'mnist3d'"),
        (["--config", TINY, "--config.parallel=tpu"], "parallel: expected one of"),
        (["--config", "README.md"], "--config: expected a Python config file"),
        (["--config", CONFIG + ":huge"], "preset: expected one of"),
        (["--config", TINY, "--config.model.hidden=('a',)"], "--config.model.hidden: expected a tuple of int"),
        (["--config", TINY, "--config.data.image_shape=(28,28)"], "data.image_shape: expected (height, width, channels)"),
        (["--config", TINY, "--config.eval.is_samples=50"], "eval.is_samples: expected 0 or a positive multiple of eval.is_chunk=20"),
    ],
)
def test_bad_input_gives_one_line(args, message, capsys, tmp_path):
    code, _, err = _main(capsys, "train", "--workdir", str(tmp_path / "w"), *args)
    assert code != 0
    assert err.startswith("genjax: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_and_corrupt_offline_data(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GENJAX_DATA_DIR", str(tmp_path / "data"))
    args = ["train", "--config", TINY, "--workdir", str(tmp_path / "w"), "--config.data.source=offline"]
    code, _, err = _main(capsys, *args)
    assert code != 0 and "mnist.npz" in err and "genjax fetch-data" in err and err.count("\n") == 1
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "mnist.npz", train_x=np.zeros((1, 28, 28, 1), np.float32))
    (tmp_path / "data" / "mnist.npz.sha256").write_text("0" * 64 + "\n")
    code, _, err = _main(capsys, *args)
    assert code != 0 and "sha256" in err.lower() and err.count("\n") == 1


def test_divergence_stops_with_the_step_and_saves_nothing_bad(capsys, tmp_path):
    # Keeping the last good checkpoint is tested in test_train with a NaN mid-run; here
    # the first update already overflows the parameter norm.
    workdir = tmp_path / "w"
    args = ["train", "--config", TINY, "--workdir", str(workdir), "--config.train.checkpoint_every=1", "--config.train.learning_rate=1e30"]
    code, _, err = _main(capsys, *args)
    assert code == 1 and err.count("\n") == 1
    assert "non-finite param_norm at step 1 " in err, err
    assert Checkpointer(workdir / "checkpoints").all_steps() == []


def test_resume_config_check_allows_schedule_fields_only():
    saved = {"seed": 0, "parallel": "jit", "train": {"num_steps": 20, "learning_rate": 1e-3}, "eval": {"is_samples": 40}}
    experiment.check_resume_config(saved, {**saved, "parallel": "pmap", "train": {"num_steps": 99, "learning_rate": 1e-3}, "eval": {"is_samples": 0}})
    with pytest.raises(ValueError, match=r"seed: 0 -> 1; train\.learning_rate: 0\.001 -> 0\.01"):
        experiment.check_resume_config(saved, {**saved, "seed": 1, "train": {"num_steps": 20, "learning_rate": 1e-2}})


def test_eval_and_sample_need_a_checkpoint(capsys, tmp_path):
    for command in (["eval"], ["sample", "--num", "4"]):
        code, _, err = _main(capsys, *command, "--config", TINY, "--workdir", str(tmp_path / "empty"))
        assert code == 1 and "no checkpoint under" in err and err.count("\n") == 1
    code, _, err = _main(capsys, "sample", "--config", TINY, "--workdir", str(tmp_path), "--num", "0")
    assert code == 1 and "--num: expected a positive int, got 0" in err


def test_resume_refuses_a_changed_config(tiny_run, capsys):
    code, _, err = _main(capsys, "train", "--config", TINY, "--workdir", str(tiny_run), "--config.train.learning_rate=0.5", "--config.train.num_steps=30")
    assert code != 0 and "different config (train.learning_rate: 0.001 -> 0.5)" in err and err.count("\n") == 1


def _train_cmd(workdir: pathlib.Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "genjax.cli",
        "train",
        "--config",
        TINY,
        "--workdir",
        str(workdir),
        "--config.train.num_steps=800",
        "--config.train.checkpoint_every=100",
        "--config.train.eval_every=0",
        "--config.eval.is_samples=0",
        *extra,
    ]


@pytest.mark.slow
def test_sigkill_then_resume_gives_identical_parameters(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    straight = tmp_path / "straight"
    subprocess.run(_train_cmd(straight), check=True, env=env, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.isdigit() and int(p.name) >= 200 for p in (killed / "checkpoints").glob("*")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps = Checkpointer(killed / "checkpoints").all_steps()
    assert steps and steps[-1] < 800, f"the run must be killed before it ends (checkpoints {steps})"
    assert not (killed / "eval.json").exists()
    subprocess.run(_train_cmd(killed), check=True, env=env, capture_output=True)
    # The digest is a SHA-256 of every byte of the state, so equal digests mean
    # bit-identical parameters and optimiser state; restoring verifies it.
    ref = Checkpointer(straight / "checkpoints").read_metadata(800)
    got = Checkpointer(killed / "checkpoints").read_metadata(800)
    assert ref["digest"] == got["digest"]


def test_console_script_errors_have_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "genjax.cli", "train", "--config", TINY, "--workdir", str(tmp_path), "--config.train.batch_size=abc"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "genjax: error: --config.train.batch_size: expected an int, got 'abc'"


def test_positive_ints_parses_a_comma_list_and_rejects_bad_items():
    import argparse

    from genjax.experiment import positive_ints

    assert positive_ints("10,20, 50,") == (10, 20, 50)
    for bad in ("", "10,x", "0", "5,-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="comma-separated positive ints"):
            positive_ints(bad)
