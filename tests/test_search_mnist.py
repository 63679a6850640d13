"""The search experiment on class-conditional MNIST (issue 19): the results schema of
``experiments/search_mnist/run.py --quick`` on a tiny trained run, and the stored held-out
classifier."""

import importlib.util
import json
import pathlib
import sys

import numpy as np
import pytest

from genjax import cli
from genjax.data import load_dataset
from genjax.metrics import mnist_classifier as mc

ROOT = pathlib.Path(__file__).resolve().parents[1]
HERE = ROOT / "experiments" / "search_mnist"
REQUIRED = ("method", "nfe", "verifier_score", "heldout_accuracy", "frechet_distance")


def _module(name, path):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # flax dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The cfg_mnist tiny preset (8x8 images, 10 labels) trained for its few steps."""
    workdir = tmp_path_factory.mktemp("cfg_tiny")
    assert cli.main(["train", "--config", "experiments/cfg_mnist/config.py:tiny", "--workdir", str(workdir)]) == 0
    return workdir


def test_quick_run_writes_the_issue_schema(tiny_run, tmp_path):
    run = _module("search_mnist_run", HERE / "run.py")
    methods = ("random", "paths", "more_steps")
    argv = ["--workdir", str(tiny_run), "--out", str(tmp_path), "--quick", "--methods", ",".join(methods), "--budgets", "4"]
    assert run.main(argv) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert {"rows", "command", "wall_time_s", "hardware"} <= set(result)
    assert result["command"].startswith("python experiments/search_mnist/run.py") and result["wall_time_s"] > 0
    assert [r["method"] for r in result["rows"]] == list(methods)
    ddim = run.samplers_lib.get_sampler("ddim", clip_x0=True)
    for row in result["rows"]:
        assert all(k in row for k in REQUIRED)
        sampler = run.samplers_lib.get_sampler("ddim", eta=run.FK_ETA, clip_x0=True) if row["method"] == "fk" else ddim
        planned = run.build_plan(row["method"], row["budget"], sampler, 2, 1000)
        assert row["nfe"] == planned.nfe <= row["budget"] == 8
        assert row["verifier_score"] <= 0.0 and 0.0 <= row["heldout_accuracy"] <= 1.0 and row["frechet_distance"] > 0
        assert row["num"] == 10
    assert (tmp_path / "scores.png").is_file() and (tmp_path / "frechet.png").is_file()


def test_the_stored_heldout_classifier_loads_and_matches_its_accuracy():
    heldout = _module("search_mnist_heldout", HERE / "heldout.py")
    metadata = json.loads(heldout.METADATA.read_text())
    shipped = mc.mnist_classifier_metadata()
    assert metadata["seed"] != shipped["seed"] and metadata["architecture"].startswith("MLP")
    assert 0.95 < metadata["test_accuracy"] <= 1.0 and heldout.WEIGHTS.stat().st_size < 1_000_000
    params = heldout.load_heldout()
    test = load_dataset("mnist", "test", source="offline")
    assert heldout.heldout_accuracy(params, test.images[:1000], test.labels[:1000]) > 0.93


def test_float16_bytes_round_trip_and_refuse_other_shapes():
    tree = {"a": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.float32)}
    back = mc.from_float16_bytes(mc.float16_bytes(tree), tree)
    np.testing.assert_allclose(back["a"], tree["a"], atol=1e-3)
    assert back["b"].dtype == np.float32
    with pytest.raises(ValueError, match="source"):
        mc.from_float16_bytes(mc.float16_bytes(tree), {"a": np.zeros((3, 2)), "b": np.zeros(4)}, source="source")
