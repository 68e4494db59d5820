"""The human-readable evaluation report pushed beside each model version.

Markdown with the overall metrics (and the baseline's, when there was one), the slice table
(gender, age, occupation), the hyperparameters and a PNG of the training curve, so a person
can see why a model was or was not blessed without opening TFMA.
"""
from __future__ import annotations

import io
import json
import logging
import statistics
from typing import Any

from common import fileio

METRICS = ("root_mean_squared_error", "mean_squared_error", "mean_absolute_error", "example_count")


def _value(metric: dict) -> float | None:
    for key in ("doubleValue", "double_value"):
        if key in metric:
            return float(metric[key])
    return None


def _slice_text(value: object) -> str:
    """A slice value as the report prints it: an empty string (the unknown gender of data
    without demographics) as "" rather than as nothing."""
    return '""' if value == "" else str(value)


def slice_metrics(evaluation_uri: str, model_name: str = "candidate") -> list[tuple[str, dict[str, float]]]:
    """[(slice name, {metric: value})] from a TFMA evaluation artifact."""
    import tensorflow_model_analysis as tfma

    rows = []
    # With a baseline, results are stored per model name; alone, under no name. TFMA warns
    # once per slice about the form that does not match, so its log is muted meanwhile.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        result = tfma.load_eval_result(evaluation_uri)
        if not any(metrics for _, metrics in result.slicing_metrics):
            result = tfma.load_eval_result(evaluation_uri, model_name=model_name)
    finally:
        absl_logger.setLevel(level)
    for slice_key, outputs in result.slicing_metrics:
        name = " & ".join(f"{k}={_slice_text(v)}" for k, v in slice_key) or "overall"
        values: dict[str, float] = {}
        for by_subkey in outputs.values():
            for metrics in by_subkey.values():
                for metric, raw in metrics.items():
                    value = _value(raw) if isinstance(raw, dict) else None
                    if value is not None and not metric.endswith("_diff"):
                        values[metric] = value
        rows.append((name, values))
    rows.sort(key=lambda row: (row[0] != "overall", row[0]))
    return rows


def plot_training_curve(history: dict[str, Any], path: str) -> None:
    """A PNG of train/eval RMSE per epoch at ``path`` (local or a URI: rendered in memory,
    then written through ``fileio``, since matplotlib only writes local files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in (("rmse", "train RMSE"), ("val_rmse", "eval RMSE")):
        if history.get(key):
            ax.plot(range(1, len(history[key]) + 1), history[key], marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMSE")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    fileio.write_bytes(path, buffer.getvalue())


def write_report(out_dir: str, *, version: str, blessed: bool, evaluation_uri: str | None,
                 history: dict[str, Any] | None) -> str:
    """Writes report.md (+ training_curve.png, metrics.json) into out_dir; returns the .md path.

    ``out_dir`` may be a URI (the Pusher's staging folder on gs://)."""
    fileio.makedirs(out_dir)
    lines = [f"# MovieLens two-tower model, version {version}", "",
             f"Blessed: **{'yes' if blessed else 'no'}**", ""]
    rows = slice_metrics(evaluation_uri) if evaluation_uri else []
    if rows:
        lines += ["## Test split metrics (TFMA)", "",
                  "| slice | RMSE | MSE | MAE | examples |", "|---|---|---|---|---|"]
        for name, values in rows:
            cells = [f"{values[m]:.4f}" if m in values and m != "example_count"
                     else (f"{int(values[m])}" if m in values else "") for m in METRICS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if history:
        plot_training_curve(history, fileio.join(out_dir, "training_curve.png"))
        rates = history.get("examples_per_second") or []
        lines += ["## Training", "", "![training curve](training_curve.png)", "",
                  f"- epochs run: {len(history.get('loss', []))}, best epoch: {(history.get('best_epoch') or 0) + 1}",
                  f"- best eval RMSE: {min(history.get('val_rmse') or [float('nan')]):.4f}",
                  f"- training examples/s (median epoch): {statistics.median_high(rates):.0f}" if rates else "",
                  f"- train/eval examples: {history.get('train_examples')}/{history.get('eval_examples')}", "",
                  "## Hyperparameters", "", "```json", json.dumps(history.get("hparams", {}), indent=1), "```"]
    fileio.write_text(fileio.join(out_dir, "metrics.json"),
                      json.dumps({"version": version, "blessed": blessed, "slices": dict(rows)}, indent=1))
    path = fileio.join(out_dir, "report.md")
    fileio.write_text(path, "\n".join(lines) + "\n")
    return path
