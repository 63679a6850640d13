"""Latent against pixel-space diffusion on MNIST: sample quality, sampling speed and
training cost side by side (Rombach et al. 2022, arXiv 2112.10752, sec. 4.1 makes the
same comparison on natural images at f = 1..32).

* Quality: the classifier Frechet distance of ``--fd-samples`` decoded samples from the
  trained ``ldm`` run against the 10,000 MNIST test images, with the protocol of
  ``experiments/ddpm_mnist/report.py`` (ancestral sampler, sigma^2 = beta_tilde,
  ``--steps`` steps, 8-bit samples, the key stream ``CLASSIFIER_DISTANCE``), so it sits
  beside that report's pixel-space number in ``experiments/ddpm_mnist/results.json``.
* Speed: samples/s of the same sampler at the same steps, and seconds per training
  step at the same batch, for the latent model (the decode and the in-step encoding
  included) and for ``experiments/ddpm_mnist``'s pixel UNet, both measured here in one
  process after compilation (speed does not depend on the weights, so the pixel
  network needs no training for it).
* Training time: the wall times recorded by the runs (``eval.json``).
* The autoencoder's floor: the classifier Frechet distance of its reconstructions of the
  first ``--fd-samples`` test images, beside the real images' distance at that count.

Usage::

    genjax train --config experiments/latent_mnist/config.py:autoencoder --workdir runs/latent_mnist_ae
    genjax train --config experiments/latent_mnist/config.py:ldm --workdir runs/latent_mnist_ldm
    python experiments/latent_mnist/compare.py --workdir runs/latent_mnist_ldm
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from genjax import experiment, keys, viz
from genjax.experiment.base import load_split
from genjax.experiment.ddpm import make_sample_fn
from genjax.hardware import device_description
from genjax.metrics import frechet_distance_from_features, load_mnist_classifier, mnist_features
from genjax.models import diffusion as diff
from genjax.train import build_train_step, num_params

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PIXEL_CONFIG = ROOT / "experiments" / "ddpm_mnist" / "config.py"
PIXEL_RESULTS = ROOT / "experiments" / "ddpm_mnist" / "results.json"


def quantise(images: np.ndarray) -> np.ndarray:
    """Samples as the 8-bit images a user would save, back in [0, 1]."""
    return np.round(np.clip(images, 0.0, 1.0) * 255.0) / 255.0


def best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls of ``fn`` (after one untimed warm-up call)."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def sampling_rate(exp: experiment.Experiment, params: Any, steps: int, batch: int, repeats: int) -> float:
    """Samples per second of the ancestral sampler (decode included under a codec)."""
    model = exp.model
    fn = make_sample_fn(exp.config, model.diffusion, model.apply, model.image_shape, sampler="ddpm", steps=steps)
    decode = (lambda z: z) if model.codec is None else model.codec.decode
    key = jax.random.key(0)
    return batch / best_seconds(lambda: decode(fn(params, key, batch)), repeats)


def step_seconds(exp: experiment.Experiment, repeats: int) -> float:
    """Seconds per training step on the config's batch (one device), after compilation."""
    train = build_train_step(exp.update, devices=jax.local_devices()[:1])
    state = train.place_state(exp.init_state(jax.random.key(0)))
    batch = train.place_batch(exp.batches(0))
    key = jax.random.key(1)
    box = {"state": state}

    def one() -> Any:
        box["state"], metrics = train.step(box["state"], batch, key)
        return metrics

    return best_seconds(one, repeats)


def reconstruction_fd(codec: Any, images: np.ndarray, batch: int, classifier: Any, test_features: np.ndarray) -> float:
    """The classifier Frechet distance of the autoencoder's reconstructions of ``images``
    (posterior means decoded, 8-bit) against the test set: the floor that the latent
    model's samples cannot beat, to set beside the real images' own distance."""
    encode = jax.jit(lambda x: codec.encode(x, None))
    chunks = []
    for lo in range(0, len(images), batch):
        x = diff.to_model_scale(images[lo : lo + batch])
        chunks.append(np.asarray(jax.device_get(codec.decode(encode(x)))))
    recon = quantise(diff.from_model_scale(np.concatenate(chunks)))
    return frechet_distance_from_features(mnist_features(classifier, recon), test_features)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a trained ldm workdir (experiments/latent_mnist/config.py:ldm)")
    parser.add_argument("--out", default=str(HERE), help="where results.json and samples.png go")
    parser.add_argument("--steps", type=int, default=50, help="ancestral sampler steps")
    parser.add_argument("--fd-samples", type=int, default=2000, help="samples for the Frechet distance")
    parser.add_argument("--batch", type=int, default=250, help="samples per compiled call")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each speed measurement")
    args = parser.parse_args(argv)
    for name in ("steps", "fd_samples", "batch", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected a positive int, got {getattr(args, name)}")
    tic = time.perf_counter()
    run = experiment.load_run(args.workdir)
    config, model = run.config, run.experiment.model
    if model.codec is None:
        raise SystemExit(f"--workdir: {args.workdir} is not a latent diffusion (ldm) run")

    classifier = load_mnist_classifier()
    test_features = mnist_features(classifier, load_split(config, config.eval.split).images)
    fn = make_sample_fn(config, model.diffusion, model.apply, model.image_shape, sampler="ddpm", steps=args.steps)
    key = keys.stream(config.seed, keys.CLASSIFIER_DISTANCE)
    start = time.perf_counter()
    chunks = []
    for i, lo in enumerate(range(0, args.fd_samples, args.batch)):
        n = min(args.batch, args.fd_samples - lo)
        chunks.append(np.asarray(jax.device_get(model.codec.decode(fn(run.params, jax.random.fold_in(key, i), n)))))
    images = quantise(diff.from_model_scale(np.concatenate(chunks)))
    fd_seconds = time.perf_counter() - start
    fd = frechet_distance_from_features(mnist_features(classifier, images), test_features)
    print(f"latent: classifier FD {fd:.2f} on {len(images)} samples ({fd_seconds:.0f}s with compilation)", flush=True)
    viz.save_image_grid(pathlib.Path(args.out) / "samples.png", images[:64], ncols=8)
    recon_fd = reconstruction_fd(model.codec, load_split(config, config.eval.split).images[: args.fd_samples], args.batch, classifier, test_features)
    print(f"autoencoder reconstructions of {args.fd_samples} test images: classifier FD {recon_fd:.2f}", flush=True)

    pixel_config = experiment.load_config(str(PIXEL_CONFIG))
    pixel = experiment.build(pixel_config)
    pixel_params = pixel.init(jax.random.key(0))
    rates = {
        "latent": sampling_rate(run.experiment, run.params, args.steps, args.batch, args.repeats),
        "pixel": sampling_rate(pixel, pixel_params, args.steps, args.batch, args.repeats),
    }
    step_s = {"latent": step_seconds(run.experiment, args.repeats * 5), "pixel": step_seconds(pixel, args.repeats * 5)}
    print(f"samples/s: latent {rates['latent']:.1f}, pixel {rates['pixel']:.1f}; s/step: latent {step_s['latent']:.3f}, pixel {step_s['pixel']:.3f}")

    pixel_results = json.loads(PIXEL_RESULTS.read_text())
    pixel_row = next(r for r in pixel_results["samplers"] if r["sampler"] == "ddpm" and r.get("variance") == "small" and r["steps"] == args.steps)
    ldm_eval = json.loads((pathlib.Path(args.workdir) / "eval.json").read_text())
    ae_dir = pathlib.Path(config.model.autoencoder)
    ae_eval = json.loads((ae_dir / "eval.json").read_text())
    ae_config = json.loads((ae_dir / "config.json").read_text())
    split = config.eval.split
    result = {
        "rows": [
            {
                "model": "latent (autoencoder_kl f=4 + ldm)",
                "classifier_frechet_distance": fd,
                "fd_samples": len(images),
                "sampler": "ddpm",
                "steps": args.steps,
                "samples_per_s": rates["latent"],
                "train_step_s": step_s["latent"],
                "train_wall_time_s": ae_eval.get("train_wall_time_s", 0.0) + ldm_eval.get("train_wall_time_s", 0.0),
                "autoencoder_train_wall_time_s": ae_eval.get("train_wall_time_s"),
                "ldm_train_wall_time_s": ldm_eval.get("train_wall_time_s"),
                "num_params": num_params(run.params),
                "autoencoder_num_params": num_params(jax.eval_shape(experiment.build(experiment.run_config(str(ae_dir))).init, jax.random.key(0))),
            },
            {
                "model": "pixel (experiments/ddpm_mnist)",
                "classifier_frechet_distance": pixel_row["classifier_frechet_distance"],
                "fd_samples": pixel_row["num"],
                "sampler": "ddpm",
                "steps": args.steps,
                "samples_per_s": rates["pixel"],
                "train_step_s": step_s["pixel"],
                "train_wall_time_s": pixel_results["train_wall_time_s"],
                "num_params": num_params(pixel_params),
                "source": "classifier FD and training time from experiments/ddpm_mnist/results.json (same protocol); speed measured here",
            },
        ],
        "reference_fd_real_images": pixel_results["fd_reference"],
        "autoencoder": {
            "psnr_db": ae_eval.get(f"{split}_psnr_db"),
            "mse": ae_eval.get(f"{split}_mse"),
            "kl": ae_eval.get(f"{split}_kl"),
            "kl_weight": ae_config["model"]["kl_weight"],
            "latent_shape": list(model.image_shape),
            "reconstruction_classifier_frechet_distance": recon_fd,
            "reconstruction_fd_images": min(args.fd_samples, len(test_features)),
        },
        "scale_factor": ldm_eval.get("scale_factor"),
        "ldm_eval": ldm_eval,
        "command": (
            f"genjax train --config experiments/latent_mnist/config.py:autoencoder --workdir {ae_dir} && "
            f"genjax train --config experiments/latent_mnist/config.py:ldm --workdir {args.workdir} && "
            f"python experiments/latent_mnist/compare.py {' '.join(sys.argv[1:] if argv is None else argv)}"
        ),
        "compare_wall_time_s": time.perf_counter() - tic,
        "hardware": device_description(),
    }
    result["wall_time_s"] = result["rows"][0]["train_wall_time_s"] + result["compare_wall_time_s"]
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
