"""A held-out MNIST classifier for the search experiment: a different model and seed.

Inference-time search maximises a verifier (Ma et al. 2025, arXiv 2501.09732, Sec. 3.1);
a search strong enough can exploit the verifier's blind spots ("verifier hacking", their
Sec. 4.1) instead of producing better digits. ``run.py`` therefore scores every sample
with a second classifier that the search never sees: this MLP 784-256-256-10 (ReLU),
trained with the genjax engine on the 50,000 offline MNIST training images with a seed
(1) and an architecture that differ from the shipped CNN verifier
(``genjax.metrics.MNISTClassifier``, seed 0). Singhal et al. (2025, arXiv 2501.06848)
evaluate their steered samples with held-out metrics for the same reason.

    python experiments/search_mnist/heldout.py

writes ``heldout_classifier.msgpack`` (float16, ``genjax.metrics.mnist_classifier.
float16_bytes``) and ``heldout_classifier.json`` (test accuracy of the stored weights,
seed, architecture, command, wall time, SHA-256) beside this file.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import sys
import time
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax.data import Batcher, load_dataset
from genjax.hardware import device_description
from genjax.metrics import mnist_classifier as mc
from genjax.train import LossUpdate, build_train_step, create_train_state, make_optimizer, num_params, train

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
WEIGHTS = HERE / "heldout_classifier.msgpack"
METADATA = HERE / "heldout_classifier.json"
ARCHITECTURE = "MLP 784-256-256-10, ReLU, no dropout"


class HeldoutMLP(nn.Module):
    """The held-out classifier: flatten, ``Dense(256)``, ReLU, ``Dense(256)``, ReLU, ``Dense(10)``.

    Attributes:
      hidden: widths of the hidden layers.
      num_classes: number of logits.
    """

    hidden: tuple[int, ...] = (256, 256)
    num_classes: int = mc.NUM_CLASSES

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits ``[B, num_classes]`` of images ``[B, 28, 28, 1]`` in [0, 1]."""
        chex.assert_rank(x, 4)
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_classes)(x)


def init_heldout(key: jax.Array) -> chex.ArrayTree:
    """Fresh float32 parameters of :class:`HeldoutMLP`."""
    return HeldoutMLP().init(key, jnp.zeros((1, *mc.IMAGE_SHAPE), jnp.float32))


def load_heldout(path: pathlib.Path = WEIGHTS) -> chex.ArrayTree:
    """The stored held-out weights as float32, checked against the metadata's SHA-256.

    Raises:
      ValueError: naming ``path`` when the checksum or the shapes do not match.
    """
    data = path.read_bytes()
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        recorded = json.loads(sidecar.read_text()).get("sha256")
        if recorded is not None and recorded != mc.weights_sha256(data):
            raise ValueError(f"{path}: SHA-256 differs from the one in {sidecar.name}")
    template = jax.eval_shape(init_heldout, jax.random.key(0))
    return mc.from_float16_bytes(data, template, source=str(path))


@jax.jit
def heldout_logits(params: chex.ArrayTree, images: jax.Array) -> jax.Array:
    """Logits ``[B, 10]`` of images ``[B, 28, 28, 1]`` in [0, 1]."""
    return HeldoutMLP().apply(params, images)


def heldout_accuracy(params: chex.ArrayTree, images: np.ndarray, labels: np.ndarray, batch: int = 1000) -> float:
    """Fraction of ``images`` ``[N, 28, 28, 1]`` in [0, 1] whose arg-max logit is their label."""
    hits = 0
    for lo in range(0, len(images), batch):
        logits = np.asarray(heldout_logits(params, jnp.asarray(images[lo : lo + batch], jnp.float32)))
        hits += int(np.sum(np.argmax(logits, -1) == labels[lo : lo + batch]))
    return hits / len(images)


def _loss(params: Any, batch: dict[str, jax.Array], keys: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    del keys
    logits = HeldoutMLP().apply(params, batch["image"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    return loss, {"accuracy": (logits.argmax(-1) == batch["label"]).mean()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Trains, stores, reloads and evaluates the held-out classifier; returns its metadata."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1950, help="Adam steps at batch 128 (390 per epoch)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=pathlib.Path, default=HERE)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    train_set = load_dataset("mnist", "train", source="offline")
    test_set = load_dataset("mnist", "test", source="offline")
    init_key, train_key = jax.random.split(jax.random.key(args.seed))
    params = init_heldout(init_key)
    optimizer = make_optimizer("adam", learning_rate=1e-3, schedule="cosine", decay_steps=args.steps)
    step = build_train_step(LossUpdate(_loss, optimizer), devices=jax.devices()[:1])
    batcher = Batcher(train_set.arrays(), batch_size=128, seed=args.seed)
    result = train(
        train_step=step, state=create_train_state(params, optimizer), batches=batcher.batch, key=train_key, num_steps=args.steps, log_every=100, progress=False
    )
    data = mc.float16_bytes(result.state.params)
    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / WEIGHTS.name
    weights.write_bytes(data)
    stored = mc.from_float16_bytes(weights.read_bytes(), jax.eval_shape(init_heldout, jax.random.key(0)), source=str(weights))
    script = pathlib.Path(__file__).resolve()
    metadata = {
        "test_accuracy": heldout_accuracy(stored, test_set.images, test_set.labels),
        "test_images": len(test_set),
        "seed": args.seed,
        "architecture": ARCHITECTURE,
        "train_steps": args.steps,
        "batch_size": 128,
        "optimizer": "adam 1e-3, cosine decay to 0, no augmentation",
        "num_params": num_params(stored),
        "weights_dtype": "float16",
        "weights_bytes": len(data),
        "sha256": mc.weights_sha256(data),
        "command": shlex.join(["python", str(script.relative_to(REPO)), *(sys.argv[1:] if argv is None else argv)]),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "device": device_description(),
    }
    (args.out / METADATA.name).write_text(json.dumps(metadata, indent=2) + "\n")
    print(json.dumps(metadata, indent=2))
    return metadata


if __name__ == "__main__":
    main()
