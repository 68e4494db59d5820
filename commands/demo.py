"""`make demo`: the offline end-to-end tour on generated data.

1. runs the whole pipeline (ExampleGen ... Pusher) on synthetic MovieLens files,
2. prints the pushed model's test RMSE next to classical baselines on the same split,
3. builds the FAISS indexes from the pushed model (`export-index`) and prints similar
   movies and a user's two-stage recommendations (FAISS candidates by retrieval score,
   re-ranked by predicted rating; both scores shown),
4. starts the model server (`movielens-tfx serve`), sends a few gRPC rating requests and
   prints the answers, then stops it,
5. says where the model, its evaluation report and every artifact are.
"""
from __future__ import annotations

import argparse
import os
import sys

from pathlib import Path

from commands import run as run_command
from pipeline.run import run_pipeline


def run_demo(args: argparse.Namespace) -> int:
    from commands.compare import compare, format_rows

    config = run_command.config_from_args(args)
    result = run_pipeline(config, verbose=args.verbose)
    run_command.print_summary(result)
    if args.stop_after not in ("evaluator", "pusher"):
        return 0
    blessed = os.path.exists(os.path.join(result.uri("Evaluator", "blessing"), "BLESSED"))
    print(f"\nModel blessed: {'yes' if blessed else 'no'} (RMSE threshold {config.rmse_threshold})")
    print("Test split RMSE, this model next to baselines fitted on train+eval:")
    print(format_rows(compare(result.uri("MovieLensExampleGen", "examples"), result.uri("Evaluator", "evaluation"))))
    base = Path(config.model_base_path)
    versions = sorted((v for v in os.listdir(base) if v.isdigit()), key=int) if base.exists() else []
    if versions:
        latest = base / versions[-1]
        print(f"\nServing model: {latest}\nEvaluation report: {latest / 'assets.extra' / 'evaluation' / 'report.md'}")
    if versions:
        _index_step(config, latest)
        _serving_step(config)
    print(f"\nDemo done. Everything is under {config.paths.root}", file=sys.stderr)
    return 0


def _index_step(config, model_dir) -> None:
    """export-index over the pushed model, then the blog's similar-movies/recommendations view."""
    import numpy as np

    from components.movielens_files import load_movielens
    from index import export, similar

    print("\n== Building the FAISS indexes (export-index) ==", flush=True)
    code = export.main(["--data", config.data_dir, "--artifacts", str(config.paths.root), "--no-progress"])
    if code != 0:
        print(f"export-index exited with {code}; skipping the similarity examples")
        return
    data = load_movielens(config.data_dir)
    counts = np.bincount(data.ratings.movie_id)
    popular = int(np.argmax(counts))
    user = int(data.ratings.user_id[0])
    print(f"\n== movielens-tfx similar --movie {popular} -k 5 ==", flush=True)
    similar.main(["--movie", str(popular), "-k", "5", "--artifacts", str(config.paths.root)])
    print(f"\n== movielens-tfx similar --user {user} -k 5  (two-stage recommendations) ==", flush=True)
    similar.main(["--user", str(user), "-k", "5", "--artifacts", str(config.paths.root)])


def _serving_step(config) -> None:
    """`movielens-tfx serve` in a child process, a few gRPC Predict calls, then SIGTERM."""
    import signal
    import subprocess
    import time

    import numpy as np
    import portpicker

    from components.movielens_files import load_movielens
    from serving.client import RatingClient, ServingClientError

    port = portpicker.pick_unused_port()
    log_path = Path(config.paths.logs_dir) / "demo-model-server.log"
    print(f"\n== movielens-tfx serve --port {port} --model_base_path {config.model_base_path} ==", flush=True)
    with open(log_path, "ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "commands.cli", "serve", f"--port={port}", "--rest_api_port=0",
             f"--model_base_path={config.model_base_path}", "--model_name=movielens"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        data = load_movielens(config.data_dir)
        users = data.ratings.user_id[:5]
        movies = data.ratings.movie_id[:5]
        deadline = time.monotonic() + 180
        with RatingClient(f"127.0.0.1:{port}", timeout=10, retries=0) as client:
            while True:
                try:
                    ratings = client.rate(users, movies)
                    break
                except ServingClientError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        print(f"the model server did not come up; see {log_path}")
                        return
                    time.sleep(0.5)
        print(f"gRPC PredictionService/Predict, model version {client.last_model_version}:")
        print(f"  {'user':>6} {'movie':>6} {'predicted':>9} {'actual':>6}  title")
        for user, movie, rating, actual in zip(users, movies, ratings, data.ratings.rating[:5]):
            print(f"  {user:>6} {movie:>6} {rating:>9.2f} {actual:>6.0f}  {data.movies[int(movie)].title}")
        print(f"(the same from a shell: movielens-tfx rate --target 127.0.0.1:{port} --user {users[0]} --movie {movies[0]})")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
