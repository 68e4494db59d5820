"""Renders every benchmarks/results/*.json as Markdown tables and refreshes the README.

    python -m benchmarks.tables            # print
    python -m benchmarks.tables --readme   # replace the block between the README markers

Keeps the README's numbers a pure function of the committed JSON files.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Callable, Sequence

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


def _load(name: str):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def accuracy(rows) -> list[str]:
    lines = ["### Rating accuracy (`python -m benchmarks.accuracy`, identical random splits)", "",
             "| dataset | split | seed | model | RMSE | MAE | seconds |", "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["split"], r["seed"], r["rmse"])):
        lines.append(f"| {r['dataset']} | {r['split']} | {r['seed']} | {r['model']} | {r['rmse']:.4f} | "
                     f"{r['mae']:.4f} | {r['seconds']:.1f} |")
    return lines


def _epoch_seconds(result) -> str:
    seconds = result.get("seconds_per_epoch")
    return f" (a whole epoch, validation included: median {statistics.median_high(seconds):.1f} s)" if seconds else ""


def pipeline(result, title: str) -> list[str]:
    lines = [f"### {title}", "", f"{result['dataset']}: {result['ratings']:,} ratings, {result['users']:,} users, "
             f"{result['movies']:,} movies; Beam `{' '.join(result['beam_args'])}`; {result['machine']['cpus']} CPUs.", "",
             "| component | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in result["seconds_per_component"].items()]
    lines.append(f"| **total** | **{result['seconds_total']:.1f}** |")
    if result.get("train_examples_per_second_median"):
        lines += ["", f"Training: {result['train_examples']:,} examples, {result['epochs_run']} epochs, "
                      f"median **{result['train_examples_per_second_median']:,} examples/s** over the training "
                      f"steps{_epoch_seconds(result)}; best eval RMSE {result['best_eval_rmse']:.4f}."]
    return lines


def serving(result) -> list[str]:
    lines = ["### Serving (`python -m benchmarks.serving`, gRPC Predict, loopback)", "",
             f"Server: {result['server']}; model {result['model_base_path']}.", "",
             "| pairs/request | clients | p50 ms | p99 ms | pairs/s | errors |", "|---|---|---|---|---|---|"]
    for r in result["results"]:
        lines.append(f"| {r['pairs_per_request']} | {r['concurrency']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['pairs_per_s']:,.0f} | {r['errors']} |")
    return lines


def index(result) -> list[str]:
    lines = ["### FAISS index and similarity service (`python -m benchmarks.index_bench`)", "",
             f"{result['catalogue']['movies']:,} movies, {result['catalogue']['users']:,} users, D={result['catalogue']['dim']}, "
             f"k={result['k']}.", "",
             "Recommendations are two-stage (FAISS top 200 over a 129-d retrieval space, re-ranked by "
             "predicted rating in NumPy).", "",
             "| vectors | index | build s | recall@10 movies/users/user→movie | in-process p50 ms | HTTP p50 / p99 ms "
             "(similar movies) | HTTP p50 / p99 ms (recommendations) |",
             "|---|---|---|---|---|---|---|"]
    for r in result["results"]:
        recall = " / ".join(f"{r['recall_at_10'][k]:.3f}" for k in ("movies_cosine", "users_cosine", "movies_ip"))
        http, rec = r["http_ms"]["similar_movies"], r["http_ms"]["recommendations"]
        lines.append(f"| {r['vectors']} | {r['index_type']} | {r['build_seconds_total']:.2f} | {recall} | "
                     f"{r['in_process_ms']['similar_movies']['p50']:.3f} | {http['p50']:.2f} / {http['p99']:.2f} | "
                     f"{rec['p50']:.2f} / {rec['p99']:.2f} |")
    return lines


def ranking(result) -> list[str]:
    split = result["split"]
    lines = [f"### Ranking on {result['dataset']} (`python -m benchmarks.ranking`, full catalogue, test ratings ≥ 4)", "",
             f"{result['dataset']} ({result['catalogue']['ratings']:,} ratings), random split "
             f"{1 - split['test_fraction']:.0%}/{split['test_fraction']:.0%} seed {split['seed']}; "
             f"knobs chosen on validation data cut from the training split.", "",
             "| model | NDCG@10 | HR@10 | Recall@50 | fit s | tuning s | test RMSE |", "|---|---|---|---|---|---|---|"]
    for r in result["results"]:
        rmse = f"{r['test_rmse']:.4f}" if "test_rmse" in r else ""
        tuning = f"{r['tuning_seconds']:.1f}" if "tuning_seconds" in r else ""
        lines.append(f"| {r['model']} | {r['NDCG@10']:.4f} | {r['HR@10']:.4f} | {r['Recall@50']:.4f} | "
                     f"{r['fit_seconds']:.1f} | {tuning} | {rmse} |")
    if result.get("similar_movies"):
        lines += ["", "| similar movies (top 10) | co_like@10 | hit@10 | lift@10 |", "|---|---|---|---|"]
        lines += [f"| {r['source']} | {r['co_like@10']:.4f} | {r['hit@10']:.4f} | {r.get('lift@10', float('nan')):.2f} |"
                  for r in result["similar_movies"]]
    if result.get("similar_users"):
        lines += ["", "| similar users (top 10 vote with their likes) | NDCG@10 | HR@10 |", "|---|---|---|"]
        lines += [f"| {r['source']} | {r['NDCG@10']:.4f} | {r['HR@10']:.4f} |" for r in result["similar_users"]]
    return lines


def _rankings() -> list[str]:
    blocks = []
    for path in sorted(RESULTS.glob("ranking_*.json")):
        blocks += ranking(json.loads(path.read_text())) + [""]
    return blocks[:-1]


SECTIONS: list[tuple[str, Callable]] = [
    ("accuracy.json", accuracy),
    ("data_pipeline.json", lambda r: pipeline(r, "Data half: ExampleGen → Transform (`python -m benchmarks.pipeline_bench --stop-after transform`)")),
    ("pipeline.json", lambda r: pipeline(r, "Whole pipeline (`python -m benchmarks.pipeline_bench --size ml-1m --hparam epochs=15`)")),
    ("serving.json", serving),
    ("index.json", index),
]


def render() -> str:
    blocks = []
    for name, fn in SECTIONS:
        result = _load(name)
        if result is not None:
            blocks.append("\n".join(fn(result)))
    rankings = _rankings()
    if rankings:
        blocks.append("\n".join(rankings))
    return "\n\n".join(blocks)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tables", description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", action="store_true", help=f"rewrite the block between {START} and {END}")
    args = parser.parse_args(argv)
    text = render()
    if not args.readme:
        print(text)
        return 0
    readme = README.read_text()
    if START not in readme or END not in readme:
        print(f"error: {README} has no {START} ... {END} block", file=sys.stderr)
        return 2
    head, rest = readme.split(START, 1)
    README.write_text(head + START + "\n" + text + "\n" + END + rest.split(END, 1)[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
