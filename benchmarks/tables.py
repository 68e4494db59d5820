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


def pipeline(result) -> list[str]:
    """One pipeline run on real files (results/pipeline_<dataset>.json)."""
    peer = result.get("peer")
    lines = [f"### Whole pipeline on {result['dataset']} (`python -m benchmarks.pipeline_bench --data "
             f"{result['data']}{' --ratings ' + result['ratings_csv'] if result.get('ratings_csv') else ''}`)", "",
             f"Data {result['data']}; Beam `{' '.join(result['beam_args'])}`; {result['machine']['cpus']} CPUs; "
             "wall clock of one run (this host's speed drifts: compare within a run).", "",
             "| component | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in result["seconds_per_component"].items()]
    lines.append(f"| data half (ExampleGen → Transform) | {result['seconds_data_half']:.1f} |")
    lines.append(f"| **total** | **{result['seconds_total']:.1f}** |")
    if peer:
        lines += ["", f"Peer, same run: TFX's stock CsvExampleGen on the ratings CSV alone took {peer['seconds']:.1f} s; "
                      f"the project's ExampleGen (ratings joined with users and movies, catalogue written) took "
                      f"{peer['project_example_gen_seconds']:.1f} s, **{peer['project_over_peer']:.2f}×** the peer's time."]
    if result.get("train_examples_per_second_median"):
        lines += ["", f"Training: {result['train_examples']:,} examples, {result['epochs_run']} epochs, "
                      f"median **{result['train_examples_per_second_median']:,} examples/s** over the training "
                      f"steps{_epoch_seconds(result)}; best eval RMSE {result['best_eval_rmse']:.4f}"
                      + (f"; test RMSE {result['test_rmse']:.4f} (TFMA, Split-test), blessed: "
                         f"{'yes' if result.get('blessed') else 'no'}" if result.get("test_rmse") else "") + "."]
    return lines


def growth(result) -> list[str]:
    """Cost growth over generated sizes (results/pipeline_growth.json)."""
    runs = result["runs"]
    sizes = ",".join(result["sizes"])
    lines = [f"### Cost growth (`python -m benchmarks.pipeline_bench --growth {sizes}`, generated data, one run)", "",
             f"Trainer: {' '.join(result['hparams_given'])} at every size; seconds of one run each, the sizes one "
             "after the other in one process. *Marginal growth* = seconds per extra million ratings between the two "
             "larger sizes over the same between the two smaller ones: 1.0 is linear beyond fixed overheads "
             "(target ≤ 1.1); *raw ratio* = (time ratio) / (ratings ratio) between the two larger sizes, overheads "
             "included.", "",
             "| component | " + " | ".join(f"{r['dataset']} ({r['ratings']:,}) s" for r in runs)
             + " | marginal growth | raw ratio |", "|---|" + "---|" * (len(runs) + 2)]
    names = [*runs[-1]["seconds_per_component"], "data half", "total"]
    for name in names:
        g = result["growth"].get(name, {})
        cells = []
        for r in runs:
            value = {"data half": r["seconds_data_half"], "total": r["seconds_total"]}.get(
                name, r["seconds_per_component"].get(name))
            cells.append(f"{value:.1f}" if value is not None else "")
        marginal = g.get("marginal_growth")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {marginal if marginal is not None else '(overhead)'}"
                     f" | {g.get('raw_ratio_per_1x', '')} |")
    return lines


def evaluator(result) -> list[str]:
    """Stock TFMA vs the vectorised executor (results/evaluator.json)."""
    variants = result["variants"]
    lines = [f"### Evaluator on {result['dataset']} Split-test (`python -m benchmarks.evaluator_bench`)", "",
             f"{result['examples']:,} test examples; the variants ran one after the other in one process on the "
             "same model and examples (compare the ratio).", "",
             "| executor | seconds | blessed | metrics / validation / files agree with stock |", "|---|---|---|---|"]
    names = {"before": "TFX's stock Evaluator (TFMA on Beam)", "vectorised": "components/evaluator.py (vectorised)"}
    for key, v in variants.items():
        agree = " / ".join("yes" if v.get(k) else "no" for k in
                           ("metrics_agree_with_before", "validation_agrees_with_before", "files_agree_with_before"))
        lines.append(f"| {names.get(key, key)} | {v['seconds_median']:.1f} | {'yes' if any(v['blessed']) else 'no'} | "
                     f"{agree if key != 'before' else '(reference)'} |")
    return lines


def beam_modes(result) -> list[str]:
    """The data half per DirectRunner mode (results/beam_modes.json)."""
    lines = [f"### Data half per DirectRunner mode on {result['data']} (`python -m benchmarks.beam_modes`)", "",
             f"The modes one after the other in one run ({max(r['round'] for r in result['runs']) + 1} round(s)), "
             "a fresh artifacts folder each; seconds of ExampleGen → Transform. The host was shared with other "
             "jobs, so read the ratios as rough.", "",
             "| mode | ExampleGen | StatisticsGen | Transform | data half | ratio to fastest |", "|---|---|---|---|---|---|"]
    for run in result["runs"]:
        c = run["seconds_per_component"]
        lines.append(f"| {run['mode']} | {c.get('MovieLensExampleGen', 0):.1f} | {c.get('StatisticsGen', 0):.1f} | "
                     f"{c.get('Transform', 0):.1f} | {run['data_half_seconds']:.1f} | "
                     f"{result['ratio_to_fastest'][run['mode']]:.2f} |")
    return lines


def demo(result) -> list[str]:
    """`make demo`'s tour, timed (results/demo.json)."""
    load = result["machine"].get("load_average_1_5_15_at_start")
    lines = ["### `make demo` (`python -m benchmarks.demo_bench`)", "",
             f"A fresh artifacts folder, everything from data generation to the gRPC answers: **{result['seconds_total']:.0f} s** "
             f"(the pipeline's components {result['seconds_pipeline']:.0f} s), exit code {result['exit_code']}; "
             f"host load average at the start {load[0] if load else '?'} on {result['machine']['cpus']} CPUs. "
             f"Library lines on the terminal: {', '.join(result['library_lines_on_terminal']) or 'none'}.", "",
             "| component | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in result["seconds_per_component"].items() if v is not None]
    lines += ["", "| the demo's comparison (test split) | RMSE | MAE |", "|---|---|---|"]
    lines += [f"| {r['model']} | {r['rmse']:.4f} | {r['mae']:.4f} |" for r in result["comparison"]]
    return lines


def serving(result) -> list[str]:
    modes = result.get("modes", {})
    lines = ["### Serving (`python -m benchmarks.serving`, gRPC Predict, loopback)", "",
             f"Server: {result['server']}; model `{result['model_base_path']}`. "
             f"{result.get('note', '')}. Modes: " + "; ".join(f"`{k}` {v}" for k, v in modes.items() if v) + ".", "",
             "| mode | pairs/request | clients | p50 ms | p99 ms | requests/s | pairs/s | server CPU ms/request | errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["results"]:
        cpu = r.get("server_cpu_ms_per_request")
        lines.append(f"| {r.get('mode', 'plain')} | {r['pairs_per_request']} | {r['concurrency']} | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['requests_per_s']:,.0f} | {r['pairs_per_s']:,.0f} | "
                     f"{'' if cpu is None else f'{cpu:.2f}'} | {r['errors']} |")
    met = result.get("targets_met", {})
    if met:
        lines += ["", "Targets: " + ", ".join(
            f"{name} ({result['targets'][name]:g}) {'not measured' if ok is None else 'met' if ok else '**missed**'}"
            for name, ok in met.items()) + "."]
    return lines + serving_server_profile(result.get("profile"), result.get("ids"))


def serving_server_profile(profile: dict | None, ids: str | None) -> list[str]:
    """The live server's profile (benchmarks.server_profile) under the serving table."""
    lines = [] if not ids else ["", f"Request ids: {ids}."]
    if not profile or profile.get("error"):
        return lines + ([] if not profile else ["", f"Profile: {profile['error']}."])
    lines += ["", f"Profile of the plain server ({profile['client']}, py-spy, {profile['seconds']:g} s, "
                  f"{profile['requests']:,} requests): a request's worker-thread time by layer, and the server's "
                  f"CPU per request by thread while sampled (py-spy's pauses add to it; the table above has the "
                  f"unsampled total).", "",
              "| layer | share of worker time |", "|---|---|"]
    lines += [f"| {layer} | {share:.0%} |" for layer, share in profile["request_layers"].items()]
    lines += ["", "| threads | CPU ms per request |", "|---|---|"]
    lines += [f"| {kind} | {ms:.2f} |" for kind, ms in profile["cpu_ms_per_request_by_thread"].items()]
    native = [f for f in profile.get("native_top_frames", []) if not f["frame"].startswith("0x")][:6]
    python = profile.get("python_top_frames", [])[:6]
    if python or native:
        lines += ["", "| top frames (Python, py-spy) | share | top frames (native) | share |", "|---|---|---|---|"]
        for i in range(max(len(python), len(native))):
            cells = []
            for frames in (python, native):
                frame = frames[i] if i < len(frames) else None
                cells += [f"`{frame['frame']}`", f"{frame['share']:.0%}"] if frame else ["", ""]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def serving_profile(result) -> list[str]:
    lines = ["### Where a 1-pair request's time goes (`python -m benchmarks.serving_profile`, in process)", "",
             f"Model `{result['model_base_path']}`; {result['note']}.", "",
             "| what | p50 ms | p90 ms |", "|---|---|---|"]
    lines += [f"| {r['what']} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} |" for r in result["results"]]
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


def browse_page(result) -> list[str]:
    lines = [f"### Browse page: server time per view (`python -m benchmarks.browse_page`, {result['dataset']})", "",
             f"{result['movies']:,} movies, {result['users']:,} users, {result['ratings']:,} ratings; vectors: "
             f"{result['vectors']}; indexes {', '.join(sorted(set(result['factories'].values())))}. A view's server "
             f"time is the sum of its requests' `Server-Timing`; target ≤ {result['target_server_ms_per_view']:g} ms. "
             f"One run on a shared {result['cpu_count']}-core machine (compare as ratios).", "",
             "| view | requests | views | server p50 ms | p99 ms | max ms | client wall p50 ms | within target |",
             "|---|---|---|---|---|---|---|---|"]
    for kind, v in result["views"].items():
        s, w = v["server_ms"], v["client_wall_ms"]
        lines.append(f"| {kind} | {v['requests_per_view']} | {v['views']} | {s['p50']:.2f} | {s['p99']:.2f} | "
                     f"{s['max']:.2f} | {w['p50']:.2f} | {'yes' if v['within_target'] else 'no'} |")
    return lines


def _ratio(value) -> str:
    return "—" if value is None or value != value else f"{value}"


#: What an index_scale tuning trial measured; its other keys are the knobs it set.
LADDER_MEASURES = ("recall_at_10", "goal", "batched_ms_per_query")


def _knobs(search) -> str:
    return ", ".join(f"{k}={v}" for k, v in search.items())


def index_scale(result) -> list[str]:
    lines = ["### FAISS at catalogue scale (`python -m benchmarks.index_scale`)", "",
             f"Generated clustered embeddings (`benchmarks/embedding_sets.py`), k={result['k']}, inner product; "
             f"knobs tuned to recall@10 ≥ {result['target_recall']} plus a statistical margin (`ann.tune_goal`: "
             f"{result.get('tune_z', 2):g} standard errors of the two halves' difference) on half of "
             f"{result['recall_queries']} sample queries, recall reported on the other half against exact search. Bytes/vector = index file size ÷ n "
             "(codes, ids, coarse quantizer, refinement data). IVF lists are cut by L2 k-means and probed by inner "
             "product (`index/ann.py`); \"spherical lists\" rows use FAISS's default for inner product instead. Latencies: one query per call on the memory-mapped "
             f"file, {result['machine']['cpus']} cores, FAISS {result['machine']['faiss']}; {result['note']}.", "",
             "| set | index | auto preset | build s (train) | B/vector | recall@10 | knobs | p50 / p99 ms | batched q/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in result["sets"]:
        for r in s["rows"]:
            knobs = _knobs(r["search"]) or "exact"
            q = r["single_query_ms"]
            partition = f" ({r['partition']} lists)" if r.get("partition") == "spherical" else ""
            lines.append(f"| {s['name']} | `{r['factory']}`{partition} | {'yes' if r['preset'] else ''} | "
                         f"{r['build_seconds']:.1f} ({r['train_seconds']:.1f}) | {r['bytes_per_vector']:.0f} | "
                         f"{r['recall_at_10']:.3f} | {knobs} | {q['p50']:.3f} / {q['p99']:.3f} | {r['batched_qps']:,.0f} |")
    if result.get("growth"):
        lines += ["", "Cost growth per 10× more items (D=64, same kind of index; ratios within this run):", "",
                  "| index kind | from → to | build × | p50 × | batched q/s × | B/vector × | recall@10 |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| `{g['family']}` | {g['from']} → {g['to']} | {_ratio(g['build_x'])} | {g['p50_x']} | {g['qps_x']} | "
                  f"{g['bytes_per_vector_x']} | {g['recall_from']:.3f} → {g['recall_to']:.3f} |" for g in result["growth"]]
    for s in result["sets"]:
        for r in s["rows"]:
            if r["preset"] and len(r.get("tuning", [])) > 1 and s["n"] >= 10_000_000:
                lines += ["", f"The tuner's ladder for `{r['factory']}` at {s['name']} (recall on the tuning half; "
                              "batched ms per query on both cores):", "",
                          "| knobs | recall@10 | goal | batched ms/query |", "|---|---|---|---|"]
                lines += [f"| {_knobs({k: v for k, v in t.items() if k not in LADDER_MEASURES})} | "
                          f"{t['recall_at_10']:.4f} | {t['goal']:.4f} | {t['batched_ms_per_query']:.3f} |"
                          for t in r["tuning"]]
    t = result.get("targets_at_10M")
    if t:
        met = ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in t["met"].items())
        lines += ["", f"Targets at 10M (`{t['factory']}`): recall@10 ≥ {t['targets']['recall_at_10']}, "
                      f"p50 ≤ {t['targets']['p50_ms']} ms, ≤ {t['targets']['bytes_per_vector']} B/vector: {met}."]
    h = result.get("service_http")
    if h and "http_ms" in h:
        sm, rec = h["http_ms"]["similar_movies"], h["http_ms"]["recommendations"]
        factories = ", ".join(f"{k} `{v}`" for k, v in h["factories"].items())
        lines += ["", f"Service over HTTP at {h['movies']:,} movies / {h['users']:,} users (auto presets: {factories}; "
                      f"mapped: {', '.join(sorted(h['mapped_files'])) or 'none'}): similar movies p50 {sm['p50']:.2f} ms / "
                      f"p99 {sm['p99']:.2f} ms, recommendations p50 {rec['p50']:.2f} ms / p99 {rec['p99']:.2f} ms; "
                      f"build {h['build_seconds']:.0f} s, load {h['load_seconds']:.2f} s."]
    lines += ["", f"Peak RSS of the run {result.get('peak_rss_gb', 0):.1f} GiB; total {result.get('total_seconds', 0) / 60:.0f} min."]
    if result.get("resumed_from"):
        lines[-1] += (" Sets not rebuilt by this run were kept (`--resume`) from an earlier run of "
                      f"`{result['resumed_from']}`: compare timings within a set, not across them.")
    return lines


def index_busy_neighbour(result) -> list[str]:
    """Single FAISS queries on all cores vs one thread, idle and beside a busy neighbour."""
    index = result["index"]
    names = {"all_cores": f"all {result['machine']['cpus']} cores (over lists)", "one_thread": "one thread"}
    lines = ["### FAISS single queries beside a busy neighbour (`python -m benchmarks.index_busy_neighbour`)", "",
             f"`{index['factory']}` over {index['n']:,} × {index['d']} generated clustered vectors "
             f"(`benchmarks/embedding_sets.py`; recall@10 {index['recall_at_10']:.3f}, "
             f"{_knobs(index['search'])}), k={result['k']}, one query per call; the two modes take turns in blocks of "
             f"{result['block']} queries. Busy: {result['neighbour']['processes']} spinning processes (one per core); "
             f"idle: none started by the run. "
             f"{result['note'].capitalize()}.", "",
             "| host | threads per query | queries | p50 ms | p99 ms | mean ms |", "|---|---|---|---|---|---|"]
    for r in result["results"]:
        q = r["single_query_ms"]
        lines.append(f"| {r['host']} | {names.get(r['threads'], r['threads'])} | {r['queries']:,} | {q['p50']:.3f} | "
                     f"{q['p99']:.3f} | {q['mean']:.3f} |")
    lines += ["", f"Held up under load (lowest p99 beside the neighbour): "
                  f"{names.get(result['held_under_load'], result['held_under_load'])}."]
    return lines


def _retrieval_fit_targets(rows: list[dict]) -> list[str]:
    """The scalable fit against the closed form (stage one, NDCG@10 ratio, target >= 0.97) and
    its two-stage list against EASE (target: at least EASE's NDCG@10), where both ran."""
    def ndcg(fit: str, stage: str) -> float | None:
        return next((r["NDCG@10"] for r in rows if r.get("retrieval_fit") == fit and stage in r["model"]), None)

    ease = next((r["NDCG@10"] for r in rows if r["model"].startswith("EASE")), None)
    closed, ials_one, ials_two = ndcg("closed_form", "stage one"), ndcg("ials", "stage one"), ndcg("ials", "two-stage")
    if None in (closed, ials_one, ials_two, ease):
        return []
    return ["", f"iALS against the closed form: stage-one NDCG@10 {ials_one:.4f} / {closed:.4f} = "
                f"{ials_one / closed:.3f} (target ≥ 0.97); two-stage {ials_two:.4f} against EASE's {ease:.4f} "
                f"(target ≥ EASE)."]


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
    lines += _retrieval_fit_targets(result["results"])
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
    ("pipeline_ml-1m.json", pipeline),
    ("beam_modes.json", beam_modes),
    ("evaluator.json", evaluator),
    ("pipeline_growth.json", growth),
    ("demo.json", demo),
    ("serving.json", serving),
    ("serving_profile.json", serving_profile),
    ("index.json", index),
    ("index_scale.json", index_scale),
    ("index_busy_neighbour.json", index_busy_neighbour),
    ("browse_page.json", browse_page),
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
