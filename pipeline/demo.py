"""`make demo`: the offline end-to-end tour on generated data.

1. runs the whole pipeline (ExampleGen ... Pusher) on synthetic MovieLens files,
2. prints the pushed model's test RMSE next to classical baselines on the same split,
3. says where the model, its evaluation report and every artifact are.
"""
from __future__ import annotations

import argparse
import os
import sys

from pipeline import run as local_run


def run_demo(args: argparse.Namespace) -> int:
    from pipeline.compare import compare, format_rows

    config = local_run.config_from_args(args)
    result = local_run.run_pipeline(config, verbose=args.verbose)
    local_run.print_summary(result)
    if args.stop_after not in ("evaluator", "pusher"):
        return 0
    blessed = os.path.exists(os.path.join(result.uri("Evaluator", "blessing"), "BLESSED"))
    print(f"\nModel blessed: {'yes' if blessed else 'no'} (RMSE threshold {config.rmse_threshold})")
    print("Test split RMSE, this model next to baselines fitted on train+eval:")
    print(format_rows(compare(result.uri("MovieLensExampleGen", "examples"), result.uri("Evaluator", "evaluation"))))
    versions = sorted((v for v in os.listdir(config.model_base_path) if v.isdigit()), key=int) \
        if config.model_base_path.exists() else []
    if versions:
        latest = config.model_base_path / versions[-1]
        print(f"\nServing model: {latest}\nEvaluation report: {latest / 'assets.extra' / 'evaluation' / 'report.md'}")
    print(f"\nDemo done. Everything is under {config.paths.root}", file=sys.stderr)
    return 0
