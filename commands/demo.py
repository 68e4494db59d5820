"""`make demo`: the offline end-to-end tour on generated data.

1. runs the whole pipeline (ExampleGen ... Pusher) on synthetic MovieLens files,
2. prints the pushed model's test RMSE next to classical baselines and a Bayesian FM peer
   (myfm) fitted on the same split,
3. builds the FAISS indexes from the pushed model and the catalogue it carries
   (`export-index`, no --data) and prints similar movies and a user's two-stage
   recommendations (FAISS candidates by retrieval score,
   re-ranked by predicted rating; both scores shown),
4. sends a few gRPC rating requests for held-out test ratings to the model server
   (`movielens-tfx serve`, started right after the push so that it loads the model while
   steps 2 and 3 run) and prints the answers next to the actual ratings, then stops it,
5. starts the similarity service over the new index and ends by printing the browse page's
   URL (similar movies, a user's profile and recommendations); ``--keep-serving`` leaves
   the service running until Ctrl-C, otherwise it is stopped and the command to start it
   again is printed,
6. says where the model, its evaluation report and every artifact are.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from commands import run as run_command
from common.logs import library_output_to, terminal
from pipeline.run import run_pipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`movielens-tfx demo`'s flags: `run`'s, and the browse page's (commands.registry)."""
    run_command.add_arguments(parser)
    parser.add_argument("--keep-serving", action="store_true",
                        help="leave the similarity service (the browse page at its URL) running at the "
                             "end, until Ctrl-C; `make demo DEMO_ARGS=--keep-serving`")
    parser.add_argument("--page-port", type=int, default=8600,
                        help="port of the browse page's similarity service on 127.0.0.1 (default: "
                             "%(default)s; a free one when it is taken)")


def run(args: argparse.Namespace) -> int:
    """`movielens-tfx demo` (commands.registry): the tour; what the libraries print (TF's C++ log, Beam's warnings) goes to
    <artifacts>/logs/demo-*.log rather than between the demo's lines (all of it with --verbose)."""
    from baselines.bayesian_fm import import_myfm

    if args.stop_after in ("evaluator", "pusher"):
        # Step 2's table includes the myfm peer (baselines.models): without myfm, say so (with
        # the install command) now rather than after the whole pipeline has run.
        import_myfm()
    config = run_command.config_from_args(args)
    log_file = Path(config.paths.logs_dir) / time.strftime("demo-%Y%m%d-%H%M%S.log")
    with nullcontext() if args.verbose else library_output_to(log_file):
        code = _tour(args, config)
    if not args.verbose:
        print(f"Library output (TensorFlow, Beam, TFX): {log_file}", file=sys.stderr)
    return code


def _tour(args: argparse.Namespace, config) -> int:
    from commands.compare import compare, format_rows

    result = run_pipeline(config, verbose=args.verbose)
    run_command.print_summary(result)
    if args.stop_after not in ("evaluator", "pusher"):
        return 0
    base = Path(config.model_base_path)
    versions = sorted((v for v in os.listdir(base) if v.isdigit()), key=int) if base.exists() else []
    # The model server loads the pushed model (TF import, 12 signatures) while the baselines
    # are fitted and the index is built: its start-up is off the demo's critical path.
    server = _Server(config) if versions else None
    page: _PageService | None = None
    try:
        blessed = os.path.exists(os.path.join(result.uri("Evaluator", "blessing"), "BLESSED"))
        print(f"\nModel blessed: {'yes' if blessed else 'no'} (RMSE threshold {config.rmse_threshold})")
        print("Test split RMSE, this model next to baselines fitted on the same train split "
              "(eval only stopped the model's training):")
        print(format_rows(compare(result.uri("MovieLensExampleGen", "examples"),
                                  result.uri("Evaluator", "evaluation"))))
        if versions:
            latest = base / versions[-1]
            print(f"\nServing model: {latest}\nEvaluation report: {latest / 'assets.extra' / 'evaluation' / 'report.md'}")
            examples = _index_step(config, latest)
            if examples is not None:
                page = _PageService(config, getattr(args, "page_port", 8600), *examples)
            _serving_step(server, latest, result.uri("MovieLensExampleGen", "examples"))
    except BaseException:
        if page is not None:
            page.stop()
        raise
    finally:
        if server is not None:
            server.stop()
    print(f"\nDemo done. Everything is under {config.paths.root}", file=terminal())
    if page is not None:
        _page_step(page, keep_serving=getattr(args, "keep_serving", False))
    return 0


def _index_step(config, model_dir) -> tuple[int, int] | None:
    """export-index over the pushed model (its own catalogue: no --data), then the
    similar-movies/recommendations view for the most-rated movie and the most active user
    (returned, for the browse page's links; None when no index was published)."""
    from data.catalogue import model_catalogue_dir, read_catalogue
    from index import export, similar

    print("\n== Building the FAISS indexes (export-index) ==", flush=True)
    code = export.main(["--artifacts", str(config.paths.root), "--no-progress"])
    if code != 0:
        print(f"export-index exited with {code}; skipping the similarity examples")
        return None
    catalogue = read_catalogue(model_catalogue_dir(model_dir))
    popular, user = catalogue.most_rated_movie(), catalogue.most_active_user()
    print(f"\n== movielens-tfx similar --movie {popular} -k 5 ==", flush=True)
    similar.main(["--movie", str(popular), "-k", "5", "--artifacts", str(config.paths.root)])
    print(f"\n== movielens-tfx similar --user {user} -k 5  (two-stage recommendations) ==", flush=True)
    similar.main(["--user", str(user), "-k", "5", "--artifacts", str(config.paths.root)])
    return popular, user


class _PageService:
    """`movielens-tfx similarity-service` in a child process on 127.0.0.1 (its log in
    <artifacts>/logs/), started once the index is published so it loads during the gRPC step."""

    def __init__(self, config, port: int, movie: int, user: int) -> None:
        import portpicker

        # 0 (or a taken port): a free one
        self.port = port if port > 0 and portpicker.is_port_free(port) else portpicker.pick_unused_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.examples = f"{self.url}#/movie/{movie}  {self.url}#/user/{user}"
        self.command = f"movielens-tfx similarity-service --artifacts {config.paths.root} --port {self.port}"
        self.log_path = Path(config.paths.logs_dir) / "demo-similarity-service.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "commands.cli", "similarity-service", "--artifacts", str(config.paths.root),
                 "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 120.0) -> bool:
        """True once the page and /healthz answer 200."""
        import httpx

        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                if (httpx.get(self.url + "healthz", timeout=2).status_code == 200
                        and httpx.get(self.url, timeout=2).status_code == 200):
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _page_step(page: _PageService, keep_serving: bool) -> None:
    """The demo's last lines: the browse page's URL; with keep_serving the service stays up."""
    if not page.wait_ready():
        page.stop()
        print(f"the similarity service did not come up; see {page.log_path}", file=terminal())
        return
    if not keep_serving:
        page.stop()
        print(f"\nBrowse similar movies and recommendations: {page.url}\n"
              f"  e.g. {page.examples}\n"
              f"  (start its service with: {page.command}\n"
              f"   or keep it running after the demo: make demo DEMO_ARGS=--keep-serving)", file=terminal())
        return
    print(f"\nBrowse similar movies and recommendations: {page.url}\n"
          f"  e.g. {page.examples}\n"
          f"  (the similarity service keeps running; Ctrl-C stops it; log: {page.log_path})",
          file=terminal(), flush=True)
    try:
        page.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        page.stop()


def _test_ratings(examples_uri: str, n: int) -> tuple[list[int], list[int], list[float]]:
    """(users, movies, ratings) of the first ``n`` held-out examples (ExampleGen's Split-test)."""
    import tensorflow as tf

    from data import features as f

    files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, "Split-test", "*")))
    spec = {f.USER_ID: tf.io.FixedLenFeature([], tf.int64), f.MOVIE_ID: tf.io.FixedLenFeature([], tf.int64),
            f.RATING: tf.io.FixedLenFeature([], tf.float32)}
    users, movies, ratings = [], [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(n):
        parsed = tf.io.parse_single_example(record, spec)
        users.append(int(parsed[f.USER_ID]))
        movies.append(int(parsed[f.MOVIE_ID]))
        ratings.append(float(parsed[f.RATING]))
    return users, movies, ratings


class _Server:
    """`movielens-tfx serve` in a child process (its log in <artifacts>/logs/), stopped with SIGTERM."""

    def __init__(self, config):
        import portpicker

        self.port = portpicker.pick_unused_port()
        self.log_path = Path(config.paths.logs_dir) / "demo-model-server.log"
        self.command = (f"movielens-tfx serve --port {self.port} --model_base_path {config.model_base_path}")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "commands.cli", "serve", f"--port={self.port}", "--rest_api_port=0",
                 f"--model_base_path={config.model_base_path}", "--model_name=movielens"],
                stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _serving_step(server: _Server, model_dir, examples_uri: str) -> None:
    """A few gRPC Predict calls on held-out test ratings (titles from the model's catalogue)
    to the model server started after the push."""
    import numpy as np

    from data.catalogue import model_catalogue_dir, read_catalogue
    from serving.client import RatingClient, ServingClientError

    port = server.port
    print(f"\n== {server.command} ==", flush=True)
    catalogue = read_catalogue(model_catalogue_dir(model_dir))
    test_users, test_movies, actuals = _test_ratings(examples_uri, 5)
    users, movies = np.array(test_users, np.int64), np.array(test_movies, np.int64)
    deadline = time.monotonic() + 180
    with RatingClient(f"127.0.0.1:{port}", timeout=10, retries=0) as client:
        while True:
            try:
                ratings = client.rate(users, movies)
                break
            except ServingClientError:
                if server.process.poll() is not None or time.monotonic() > deadline:
                    print(f"the model server did not come up; see {server.log_path}")
                    return
                time.sleep(0.25)
    print(f"gRPC PredictionService/Predict, model version {client.last_model_version}:")
    print(f"  {'user':>6} {'movie':>6} {'predicted':>9} {'actual':>6}  title")
    for user, movie, rating, actual in zip(users, movies, ratings, actuals):
        print(f"  {user:>6} {movie:>6} {rating:>9.2f} {actual:>6.0f}  {catalogue.movies[int(movie)].title}")
    print(f"(the same from a shell: movielens-tfx rate --target 127.0.0.1:{port} --user {users[0]} --movie {movies[0]})")
