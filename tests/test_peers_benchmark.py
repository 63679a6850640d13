"""Smoke test of ``benchmarks/peers.py`` (genjax next to diffusers/PyTorch) on its tiny preset.

The script is run in-process through its ``main`` with one timed run of each kind; the
test checks the JSON it writes: its keys, that the start-up forward-pass parity check
passed, that every timing is positive and that every rate and ratio is the one its
reported times imply. Timings themselves are meaningless here (tests compile XLA
without optimisations, see conftest.py).
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys
from types import ModuleType

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

ROOT = pathlib.Path(__file__).resolve().parents[1]
BATCH, STEPS, TRAIN_BATCH, PEAK = 2, 2, 2, 1e12


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("peers_benchmark", ROOT / "benchmarks" / "peers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    """The JSON record of one tiny run (one repeat, one training step per run)."""
    peers = _load_script()
    out = tmp_path_factory.mktemp("peers") / "peers_tiny.json"
    threads = torch.get_num_threads()
    argv = [
        "--preset", "tiny", "--batch", str(BATCH), "--steps", str(STEPS), "--repeats", "1",
        "--train-batch", str(TRAIN_BATCH), "--train-steps", "1", "--peak-flops", str(PEAK),
        "--torch-threads", "1", "--json", str(out),
    ]  # fmt: skip
    try:
        returned = peers.main(argv)
    finally:
        torch.set_num_threads(threads)  # the script sets it for the whole process
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(returned))
    return data


def test_keys_and_settings(result):
    top = {
        "benchmark", "command", "date", "device", "versions", "threads", "load_average", "precision", "preset", "unet_config",
        "num_params", "image_shape", "batch", "steps", "repeats", "train_batch", "train_steps_per_run", "seed",
        "peak_flops", "torch_compile", "parity", "flops_per_eval", "flops_per_eval_source",
        "flops_per_eval_cost_analysis", "sampling", "train_step", "notes",
    }  # fmt: skip
    assert top <= set(result)
    assert set(result["versions"]) >= {"python", "jax", "jaxlib", "flax", "torch", "diffusers"}
    assert result["threads"]["torch_num_threads"] == 1
    assert {"jax", "jax_platform", "jax_device_kind", "torch", "cpu"} <= set(result["device"])
    assert result["preset"] == "tiny" and result["image_shape"] == [8, 8, 3]
    assert (result["batch"], result["steps"], result["repeats"], result["train_batch"]) == (BATCH, STEPS, 1, TRAIN_BATCH)
    assert result["num_params"] > 0 and result["torch_compile"] is False
    assert "--preset tiny" in result["command"]
    assert set(result["sampling"]) == {"ddpm", "ddim"}
    for rec in result["sampling"].values():
        assert {"genjax", "diffusers", "ratio_images_per_s", "evals_per_image", "timesteps_match"} <= set(rec)
        assert rec["timesteps_match"] is True  # 2 steps: round(linspace(0, 999, 2)) = genjax's grid
    assert {"genjax", "torch", "ratio_steps_per_s", "flops_per_example"} <= set(result["train_step"])


def test_parity_passed(result):
    parity = result["parity"]
    assert parity["passed"] is True
    assert parity["max_abs_output"] > 0.1
    assert parity["max_abs_diff"] <= 1e-4 * parity["max_abs_output"]
    assert parity["max_abs_diff"] < 1e-3


def test_sampling_timings_and_ratios(result):
    assert result["flops_per_eval"] > 0
    for rec in result["sampling"].values():
        assert rec["evals_per_image"] == STEPS
        for lib in ("genjax", "diffusers"):
            r = rec[lib]
            assert len(r["seconds_all"]) == 1 and all(s > 0 for s in r["seconds_all"])
            assert r["seconds_median"] > 0 and r["first_call_s"] > 0
            assert r["images_per_s"] == pytest.approx(BATCH / r["seconds_median"])
            assert r["evals_per_s"] == pytest.approx(r["images_per_s"] * STEPS)
            assert r["flops_per_s"] == pytest.approx(r["evals_per_s"] * result["flops_per_eval"])
            assert r["mfu"] == pytest.approx(r["flops_per_s"] / PEAK)
        assert rec["genjax"]["compile_s"] > 0
        assert rec["genjax"]["compile_s"] == pytest.approx(rec["genjax"]["lower_s"] + rec["genjax"]["xla_compile_s"])
        assert rec["ratio_images_per_s"] == pytest.approx(rec["genjax"]["images_per_s"] / rec["diffusers"]["images_per_s"], rel=1e-12)


def test_train_step_timings_and_ratio(result):
    train = result["train_step"]
    assert train["flops_per_example"] > 0
    for lib in ("genjax", "torch"):
        r = train[lib]
        assert all(s > 0 for s in r["seconds_per_step_all"]) and r["first_call_s"] > 0
        assert r["steps_per_s"] == pytest.approx(1.0 / r["seconds_per_step_median"])
        assert r["examples_per_s"] == pytest.approx(TRAIN_BATCH * r["steps_per_s"])
        assert r["mfu"] == pytest.approx(r["flops_per_s"] / PEAK)
    assert train["genjax"]["compile_s"] > 0
    assert train["ratio_steps_per_s"] == pytest.approx(train["genjax"]["steps_per_s"] / train["torch"]["steps_per_s"], rel=1e-12)


def test_compiled_cost_counts_a_matmul():
    """The shared cost-analysis helper the benchmarks' FLOP counts (and MFU) come from."""
    import jax
    import jax.numpy as jnp

    from genjax.hardware import compiled_cost

    a, b = jnp.ones((8, 16)), jnp.ones((16, 4))
    assert compiled_cost(jax.jit(lambda x, y: x @ y).lower(a, b).compile())["flops"] == 2 * 8 * 16 * 4
    assert compiled_cost(object()) == {}  # a backend without cost analysis
