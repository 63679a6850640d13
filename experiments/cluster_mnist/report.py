"""Merges the runners' results files into results.json and prints the RESULTS.md table.

``run.py`` writes one results file per invocation (``--out``); several run side by side
so that the methods share the machine. This script joins their rows (a later file's row
replaces an earlier one for the same method and dataset) and prints the markdown table
of ACC, NMI and ARI against the papers' accuracies::

    python experiments/cluster_mnist/report.py experiments/cluster_mnist/results*.json
"""

from __future__ import annotations

import argparse
import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent

PAPER_ACC = {
    "ae": (None, "AE + k-means"),
    "ae_bce": (None, "AE (Bernoulli decoder) + k-means"),
    "dec": (0.843, "DEC, Xie et al. 2016"),
    "idec": (0.881, "IDEC, Guo et al. 2017"),
    "dcn": (0.830, "DCN, Yang et al. 2017"),
    "sdec": (None, "IDEC + 1% pairwise constraints"),
    "vade": (0.9446, "VaDE, Jiang et al. 2017"),
    "gmvae": (None, "GMVAE, Dilokthanakul et al. 2016 (K = 10)"),
    "clustergan_mlp": (0.95, "ClusterGAN, Mukherjee et al. 2019 (MLP nets here)"),
}
"""The accuracy each paper reports on MNIST (the targets of issue 20), and a label."""


def merge(paths: list[pathlib.Path]) -> dict:
    """The rows of every file, later files replacing earlier rows of the same method."""
    rows: dict[tuple[str, str], dict] = {}
    commands = []
    for path in paths:
        record = json.loads(path.read_text())
        commands.append(record["command"])
        for row in record["rows"]:
            rows[(row["method"], row["dataset"])] = row
    order = list(PAPER_ACC)
    ranked = sorted(rows.values(), key=lambda r: (r["dataset"], order.index(r["method"]) if r["method"] in order else len(order)))
    return {"rows": ranked, "command": " && ".join(commands)}


def table(rows: list[dict]) -> str:
    """The markdown table of the rows against the papers' accuracies."""
    lines = [
        "| method | dataset | seeds | ACC (mean ± std) | NMI | ARI | test-split ACC | paper ACC | target met | wall time (all seeds) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        paper, label = PAPER_ACC.get(r["method"], (None, r["method"]))
        met = "—" if paper is None else ("yes" if r["acc_mean"] >= paper - 0.0005 else "**no**")
        lines.append(
            f"| {label} | {r['dataset']} | {r['seeds']} | {100 * r['acc_mean']:.2f} ± {100 * r['acc_std']:.2f} | "
            f"{r['nmi_mean']:.3f} | {r['ari_mean']:.3f} | {100 * r['test_acc_mean']:.2f} | "
            f"{'—' if paper is None else f'{100 * paper:.2f}'} | {met} | {r['wall_time_s'] / 60:.0f} min |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "results.json")
    args = parser.parse_args(argv)
    merged = merge(args.files)
    args.out.write_text(json.dumps(merged, indent=2) + "\n")
    print(table(merged["rows"]))


if __name__ == "__main__":
    main()
