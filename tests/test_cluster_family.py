"""The clustering families end to end on generated, well-separated clusters."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from genjax.experiment import load_config, load_run, train

CONFIG = "experiments/cluster_mnist/config.py"


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ae")
    metrics = train(load_config(f"{CONFIG}:ae_tiny"), workdir)
    return workdir, metrics


def test_pretrained_autoencoder_with_kmeans_separates_the_clusters(ae_run):
    workdir, metrics = ae_run
    assert metrics["acc"] == 1.0 and metrics["test_acc"] == 1.0
    assert metrics["num_examples"] == 3000 and metrics["test_num_examples"] == 500
    assert metrics["test_reconstruction"] < 0.02
    assert (workdir / "latent.png").exists() and (workdir / "confusion.png").exists()


@pytest.mark.parametrize("method", ["dec", "idec", "dcn", "sdec"])
def test_each_method_reaches_accuracy_one_and_stops_on_the_assignment_criterion(ae_run, tmp_path, method):
    config = load_config(f"{CONFIG}:{method}_tiny", [f"model.pretrained={ae_run[0]}"])
    metrics = train(config, tmp_path)
    assert metrics["acc"] == 1.0 and metrics["test_acc"] == 1.0
    assert metrics["nmi"] == pytest.approx(1.0) and metrics["ari"] == pytest.approx(1.0)
    # Stopped at the first check after a refresh with < 0.1% of assignments changed.
    assert metrics["stopped_at_step"] < config.train.num_steps
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["converged"] == 1.0 and logged[-1]["assignment_change"] < config.model.tol
    if method == "dcn":
        # DCN's centroids moved by eq. 8 from their k-means start, and evaluation used the moved ones.
        run = load_run(tmp_path)
        assert not np.array_equal(run.params["centroids"], run.experiment.init_model_state["centroids"])


def test_dec_refuses_bad_clusters_and_a_missing_or_wrong_pretrained_run(ae_run, tmp_path):
    with pytest.raises(ValueError, match=r"model.num_clusters: expected an int in \[2, 3000\]"):
        train(load_config(f"{CONFIG}:ae_tiny", ["model.num_clusters=1"]), tmp_path / "a")
    with pytest.raises(ValueError, match="model.pretrained: expected the workdir of a trained cluster_ae run"):
        train(load_config(f"{CONFIG}:idec_tiny"), tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="model.pretrained"):
        train(load_config(f"{CONFIG}:idec_tiny", [f"model.pretrained={tmp_path / 'none'}"]), tmp_path / "c")
    with pytest.raises(ValueError, match="model.method: expected one of"):
        train(load_config(f"{CONFIG}:idec_tiny", [f"model.pretrained={ae_run[0]}", "model.method=kmeans"]), tmp_path / "d")


def test_the_fashion_variant_loads_fashion_mnist_through_tfds(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    rng = np.random.default_rng(0)
    records = [{"image": rng.integers(0, 256, (28, 28, 1), dtype=np.uint8), "label": i % 10} for i in range(40)]

    def fake_source(builder, split=None, **kwargs):
        assert builder.name == "fashion_mnist"
        return list(records)

    config = load_config(f"{CONFIG}:ae,fashion", ["model.dims=(16,4)", "train.num_steps=2", "train.batch_size=24", "model.kmeans_n_init=1"])
    assert (config.data.name, config.data.source, config.data.train_split) == ("fashion_mnist", "tfds", "train+valid+test")
    with tfds.testing.mock_data(num_examples=40, as_data_source_fn=fake_source, data_dir=str(tmp_path / "tfds")):
        metrics = train(config, tmp_path / "run")
    # Each of the three splits serves the 40 mock records.
    assert metrics["num_examples"] == 120 and metrics["test_num_examples"] == 40 and 0.0 < metrics["acc"] <= 1.0


def test_constraints_from_a_file_are_used_and_pairs_naming_missing_examples_are_refused(ae_run, tmp_path):
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    np.savez(good, first=np.arange(0, 40), second=np.arange(40, 80), must_link=np.zeros(40, bool))
    np.savez(bad, first=np.array([0, 1]), second=np.array([2, 3000]), must_link=np.array([True, False]))
    fields = [f"model.pretrained={ae_run[0]}", "train.num_steps=20"]
    metrics = train(load_config(f"{CONFIG}:idec_tiny", [*fields, f"model.constraints={good}"]), tmp_path / "good")
    assert "constraints" in json.loads((tmp_path / "good" / "metrics.jsonl").read_text().splitlines()[-1]) and metrics["step"] == 20
    with pytest.raises(ValueError, match=r"model.constraints: second indices must lie in \[0, 3000\), got range \[2, 3000\]"):
        train(load_config(f"{CONFIG}:idec_tiny", [*fields, f"model.constraints={bad}"]), tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="model.constraints: no file at"):
        train(load_config(f"{CONFIG}:idec_tiny", [*fields, f"model.constraints={tmp_path / 'none.npz'}"]), tmp_path / "none")


@pytest.mark.parametrize("tol", [0.0, 0.5])
def test_an_interrupted_run_resumes_exactly_and_stops_where_an_uninterrupted_one_does(ae_run, tmp_path, tol):
    # tol 0 never converges; tol 0.5 converges at the first refresh (step 20). The
    # interrupted run's checkpoint (step 10 or 30) is not on a stop check.
    fields = [f"model.pretrained={ae_run[0]}", f"model.tol={tol}", "train.num_steps=60"]
    whole = train(load_config(f"{CONFIG}:idec_tiny", fields), tmp_path / "whole")
    first = 10 if tol else 30
    train(load_config(f"{CONFIG}:idec_tiny", [*fields[:-1], f"train.num_steps={first}"]), tmp_path / "parts")
    parts = train(load_config(f"{CONFIG}:idec_tiny", fields), tmp_path / "parts")
    assert parts["stopped_at_step"] == whole["stopped_at_step"] == (20 if tol else 60)
    a, b = load_run(tmp_path / "whole"), load_run(tmp_path / "parts")
    for x, y in zip(jax.tree.leaves((a.state.params, a.state.model_state)), jax.tree.leaves((b.state.params, b.state.model_state)), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
