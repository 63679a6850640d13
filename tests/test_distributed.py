"""Multi-process runs on jax.distributed: 2 processes x 2 CPU devices on 127.0.0.1 give the
numbers of one process, survive a kill, and refuse bad input on every process."""

import importlib.util
import json
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from genjax import cli, distributed, experiment
from genjax.train import Checkpointer

ROOT = pathlib.Path(__file__).resolve().parents[1]
VAE = "experiments/vae_mnist/config.py:tiny"
DDPM = "experiments/ddpm_mnist/config.py:tiny"


def _module(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


MP = _module("multiprocess")
FI = _module("fault_injection")


def _argv(workdir, config, overrides):
    return ["train", "--config", config, "--workdir", str(workdir), *(f"--config.{o}" for o in overrides)]


def _train_together(*runs, timeout_s=300):
    """Trains several runs ``(workdir, config, processes, devices, overrides)`` at once:
    XLA compiles on one core, so two runs overlap on two."""
    launched = [MP.launch(_argv(w, c, o), num_processes=p, devices_per_process=d) for w, c, p, d, o in runs]
    for (workdir, _, processes, _, _), procs in zip(runs, launched, strict=True):
        for i, (code, _, err) in enumerate(MP.wait_all(procs, timeout_s)):
            assert code == 0, f"{workdir.name}: process {i} of {processes} exited {code}: {err[-2000:]}"


def _train(workdir, config, processes, devices, *overrides):
    _train_together((workdir, config, processes, devices, overrides))


def _losses(workdir):
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows], np.array([r["loss"] for r in rows])


def _params(workdir):
    return jax.tree.leaves(experiment.load_run(workdir).state.params)


@pytest.fixture(scope="module")
def vae_runs(tmp_path_factory):
    """The tiny VAE trained as 2 processes x 2 devices, 1 x 4 and 1 x 1."""
    root = tmp_path_factory.mktemp("vae_runs")
    _train(root / "2x2", VAE, 2, 2)
    _train_together((root / "1x4", VAE, 1, 4, ()), (root / "1x1", VAE, 1, 1, ()))
    return root


def _assert_same_run(a, b):
    steps, losses = _losses(a)
    other_steps, other_losses = _losses(b)
    assert steps == other_steps, "process 0 alone writes metrics: each step once"
    np.testing.assert_allclose(losses, other_losses, rtol=1e-5)
    for x, y in zip(_params(a), _params(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("other", ["1x4", "1x1"])
def test_two_processes_of_two_devices_match_one_process(other, vae_runs):
    _assert_same_run(vae_runs / "2x2", vae_runs / other)
    state_files = {p.name for p in (vae_runs / "2x2" / "checkpoints" / "20" / "state").iterdir()}
    assert {"ocdbt.process_0", "ocdbt.process_1"} <= state_files, "each process writes its own shards"


@pytest.mark.slow
def test_two_processes_match_one_process_for_the_tiny_ddpm(tmp_path):
    # One level of the UNet (with its attention): the strided conv of a second level
    # would double the compile time of each of the four processes.
    fast = ("model.ch_mult=(1,)", "model.attn_resolutions=(8,)", "eval.bpd_examples=0", "eval.sampler_steps=4", "eval.progressive_frames=2")
    _train(tmp_path / "2x2", DDPM, 2, 2, *fast)
    _train_together((tmp_path / "1x4", DDPM, 1, 4, fast), (tmp_path / "1x1", DDPM, 1, 1, fast))
    _assert_same_run(tmp_path / "2x2", tmp_path / "1x4")
    _assert_same_run(tmp_path / "2x2", tmp_path / "1x1")


@pytest.mark.slow
def test_a_checkpoint_of_two_processes_resumes_in_one(vae_runs, tmp_path):
    # The two-process run and the one-device run both continue to step 30 as one process.
    for name in ("2x2", "1x1"):
        shutil.copytree(vae_runs / name, tmp_path / name)
    _train_together(*((tmp_path / name, VAE, 1, 1, ("train.num_steps=30",)) for name in ("2x2", "1x1")))
    assert _losses(tmp_path / "2x2")[0][-1] == 30
    _assert_same_run(tmp_path / "2x2", tmp_path / "1x1")


@pytest.mark.slow
def test_killing_one_process_then_restarting_both_resumes_exactly(tmp_path):
    overrides = ("train.num_steps=120", "train.checkpoint_every=20", "train.log_every=10", "train.eval_every=0", "eval.is_samples=0")
    # The uninterrupted reference runs beside the run that is killed.
    straight = MP.launch(_argv(tmp_path / "straight", VAE, overrides), num_processes=2, devices_per_process=2)
    killed = tmp_path / "killed"
    procs = MP.launch(_argv(killed, VAE, overrides), num_processes=2, devices_per_process=2)
    deadline = time.time() + 240
    while time.time() < deadline and not (killed / "checkpoints" / "40" / "genjax_manifest.json").is_file():
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait()
    # Process 0 now waits on a collective with a dead peer; a scheduler stops it too.
    time.sleep(0.5)
    procs[0].send_signal(signal.SIGKILL)
    MP.wait_all(procs, 30)
    assert [code for code, _, _ in MP.wait_all(straight, 300)] == [0, 0]
    steps = Checkpointer(killed / "checkpoints").all_steps()
    assert steps and steps[-1] < 120, f"the run must be killed before it ends (checkpoints {steps})"
    _train(killed, VAE, 2, 2, *overrides)
    assert FI.compare(FI.outcome(tmp_path / "straight", 120), FI.outcome(killed, 120)) == []


@pytest.mark.slow
def test_processes_given_different_configs_are_refused_on_every_process(tmp_path):
    port = MP.free_port()
    procs = []
    for i, lr in enumerate(("0.001", "0.002")):
        argv = ["train", "--config", VAE, "--workdir", str(tmp_path / "w"), f"--config.train.learning_rate={lr}"]
        flags = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)]
        procs.append(
            subprocess.Popen([sys.executable, "-m", "genjax", *argv, *flags], env=MP.process_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    for code, _, err in MP.wait_all(procs, 120):
        assert code == 1 and "genjax: error: --config: processes [1] differ from process 0" in err, err
    assert not (tmp_path / "w" / "checkpoints").exists()


@pytest.mark.slow
def test_a_global_batch_the_devices_do_not_divide_is_refused_on_every_process(tmp_path):
    results = MP.run(
        ["train", "--config", VAE, "--workdir", str(tmp_path / "w"), "--config.train.batch_size=6"], num_processes=2, devices_per_process=2, timeout_s=120
    )
    for code, _, err in results:
        assert code != 0 and "train.batch_size: the global batch 6 must be divisible by the device count 4" in err, err


@pytest.mark.slow
def test_a_missing_process_is_a_bounded_one_line_error_naming_the_flag(tmp_path):
    port = MP.free_port()
    base = ["train", "--config", VAE, "--workdir", str(tmp_path / "w"), "--num-processes", "2", "--distributed-timeout", "2"]
    for pid, message in ((1, "--coordinator: nothing answered at"), (0, "--num-processes: processes [1] of 2 did not reach --coordinator")):
        tic = time.time()
        proc = subprocess.Popen(
            [sys.executable, "-m", "genjax", *base, "--coordinator", f"127.0.0.1:{port}", "--process-id", str(pid)],
            env=MP.process_env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        ((code, _, err),) = MP.wait_all([proc], 60)
        assert code == 1 and message in err and err.count("\n") == 1, err
        assert time.time() - tic < 30


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"], "--process-id: expected an int in [0, 2), got 2"),
        (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "-1"], "--process-id: expected an int in [0, 2), got -1"),
        (["--coordinator", "127.0.0.1:1234"], "--num-processes: a multi-process run needs --coordinator, --num-processes and --process-id together"),
        (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"], "--coordinator: expected HOST:PORT"),
        (["--coordinator", "h:70000", "--num-processes", "2", "--process-id", "0"], "--coordinator: expected HOST:PORT with a port in 1..65535"),
        (["--num-processes", "0", "--process-id", "0", "--coordinator", "h:1"], "--num-processes: expected a positive int, got 0"),
        (["--distributed-timeout", "0"], "--distributed-timeout: expected a positive number of seconds, got 0"),
        (["--config.fsdp=3"], "fsdp: expected a positive int dividing the device count 8, got 3"),
        (["--config.fsdp=2", "--config.parallel=pmap"], "fsdp: parameter sharding needs parallel='jit'"),
    ],
)
def test_bad_process_flags_are_one_line(flags, message, capsys, tmp_path):
    code = cli.main(["train", "--config", VAE, "--workdir", str(tmp_path / "w"), *flags])
    err = capsys.readouterr().err
    assert code in (1, 2) and err.startswith("genjax: error: ") and message in err and err.count("\n") == 1, err


def test_one_process_helpers_are_no_ops():
    assert distributed.is_writer() and distributed.broadcast_int(7) == 7
    distributed.check_same_everywhere({"a": 1}, "--config")
    distributed.barrier("x")
    assert distributed.fingerprint({"a": 1, "b": 2}) == distributed.fingerprint({"b": 2, "a": 1}) != distributed.fingerprint({"a": 2, "b": 2})
    assert distributed.initialize() is False


@pytest.mark.parametrize(
    ("environ", "cluster"),
    [
        ({}, None),
        ({"SLURM_STEP_NUM_TASKS": "1", "SLURM_JOB_ID": "7"}, None),  # one task, or an sbatch script outside srun
        ({"SLURM_STEP_NUM_TASKS": "4"}, "slurm"),
        ({"SLURM_STEP_NUM_TASKS": "x"}, None),
        ({"TPU_WORKER_HOSTNAMES": "t1k-w-0"}, None),  # a single-host TPU VM
        ({"TPU_WORKER_HOSTNAMES": "t1k-w-0,t1k-w-1"}, "tpu"),
    ],
)
def test_detected_cluster(environ, cluster):
    assert distributed.detected_cluster(environ) == cluster
