"""gs://-style paths end to end on TensorFlow's in-memory ``ram://`` filesystem.

No test machine reaches Cloud Storage, but ``ram://`` goes through exactly the same
``tf.io.gfile`` calls as ``gs://`` (and, like an object store, has no folders to rename
atomically), so these tests show that the Pusher, the index publisher and the MovieLens
reader work on a non-local filesystem: they write there and read back.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

tf = pytest.importorskip("tensorflow")

from common import fileio  # noqa: E402


@pytest.fixture()
def ram_root() -> str:
    """A fresh ram:// folder per test (the filesystem is process-wide)."""
    root = f"ram://cloud-test-{uuid.uuid4().hex[:8]}"
    tf.io.gfile.makedirs(root)
    yield root
    fileio.rmtree(root)


def _fake_saved_model(folder: Path, payload: bytes) -> Path:
    """The files a SavedModel push copies (the Pusher never parses them)."""
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(payload)
    (folder / "variables" / "variables.index").write_bytes(b"index" + payload)
    (folder / "variables" / "variables.data-00000-of-00001").write_bytes(b"data" + payload)
    (folder / "assets.extra").mkdir()
    (folder / "assets.extra" / "two_stage.json").write_text('{"rerank_weight": 0.5}')
    return folder


def test_fileio_round_trip(ram_root: str, tmp_path: Path) -> None:
    path = fileio.join(ram_root, "a", "b.txt")
    fileio.write_text(path, "hello")
    assert fileio.isfile(path) and fileio.isdir(fileio.join(ram_root, "a"))
    assert fileio.read_text(path) == "hello" and fileio.size(path) == 5
    assert fileio.listdir(ram_root) == ["a"]
    assert fileio.glob(fileio.join(ram_root, "*", "*.txt")) == [path]
    fileio.copy_tree(fileio.join(ram_root, "a"), tmp_path / "local")
    assert (tmp_path / "local" / "b.txt").read_text() == "hello"
    fileio.rename_tree(fileio.join(ram_root, "a"), fileio.join(ram_root, "c"))
    assert not fileio.exists(fileio.join(ram_root, "a"))
    assert fileio.read_text(fileio.join(ram_root, "c", "b.txt")) == "hello"
    assert fileio.to_path("gs://bucket/x") == "gs://bucket/x"
    assert isinstance(fileio.to_path("relative/x"), Path)


def test_push_to_ram_and_read_back(ram_root: str, tmp_path: Path) -> None:
    from components.pusher import REPORT_DIR, already_pushed, push_atomically

    model = _fake_saved_model(tmp_path / "model", b"model-one")
    base = fileio.join(ram_root, "serving", "movielens")
    assert already_pushed(str(model), base) is None  # no base directory yet

    history = {"loss": [1.0, 0.8], "rmse": [1.1, 0.95], "val_rmse": [1.0, 0.9],
               "examples_per_second": [100.0, 120.0], "best_epoch": 1, "hparams": {"embedding_dim": 8},
               "train_examples": 10, "eval_examples": 5}
    final = push_atomically(str(model), base, "1700000000",
                            {"blessed": True, "evaluation_uri": None, "history": history})
    assert final == f"{base}/1700000000"
    # Only the numeric version is left: the staging folder is gone.
    assert fileio.listdir(base) == ["1700000000"]
    for rel in ("saved_model.pb", "variables/variables.index",
                "variables/variables.data-00000-of-00001", "assets.extra/two_stage.json"):
        assert fileio.read_bytes(fileio.join(final, rel)) == (model / rel).read_bytes()
    report = fileio.read_text(fileio.join(final, REPORT_DIR, "report.md"))
    assert "version 1700000000" in report and "Blessed: **yes**" in report
    assert fileio.read_bytes(fileio.join(final, REPORT_DIR, "training_curve.png"))[:4] == b"\x89PNG"
    assert '"blessed": true' in fileio.read_text(fileio.join(final, REPORT_DIR, "metrics.json"))

    # The same SavedModel is recognised as pushed; another one is not.
    assert already_pushed(str(model), base) == "1700000000"
    other = _fake_saved_model(tmp_path / "other", b"model-two")
    assert already_pushed(str(other), base) is None
    push_atomically(str(other), base, "1700000001")
    assert fileio.listdir(base) == ["1700000000", "1700000001"]
    assert already_pushed(str(other), base) == "1700000001"


def test_load_movielens_from_ram(ram_root: str, tmp_path: Path) -> None:
    import shutil

    import numpy as np

    from data import synthetic_data
    from data.movielens_files import detect_format, find_data_dir, load_movielens

    local = tmp_path / "ml-synthetic"
    synthetic_data.generate(local, n_users=30, n_movies=20, n_ratings=200, seed=3)
    remote_parent = fileio.join(ram_root, "bucket")
    fileio.copy_tree(local, fileio.join(remote_parent, "ml-synthetic"))
    remote = fileio.join(remote_parent, "ml-synthetic")

    assert detect_format(remote) == "ml-1m"
    assert find_data_dir(remote_parent) == remote  # the single data set one level below
    expected = load_movielens(local)
    data = load_movielens(remote)
    assert data.source == remote and data.fmt == "ml-1m"
    assert data.users == expected.users and data.movies == expected.movies
    np.testing.assert_array_equal(data.ratings.rating, expected.ratings.rating)
    np.testing.assert_array_equal(data.ratings.movie_id, expected.ratings.movie_id)

    # A ratings CSV on the remote filesystem, one bad row quarantined to it too.
    csv = fileio.join(ram_root, "ratings.csv")
    fileio.write_text(csv, "user,movie,rating\n1,1,4\n1,1,9\n")
    quarantine = fileio.join(ram_root, "quarantine", "bad_rows.tsv")
    data = load_movielens(remote, ratings_csv=csv, skip_bad_rows=True, quarantine_path=quarantine)
    assert len(data.ratings) == 1 and len(data.bad_rows) == 1
    rows = fileio.read_text(quarantine).splitlines()
    assert rows[0].startswith("path\tline") and rows[1].startswith(f"{csv}\t3\trating")

    # A remote .zip is copied to a local temp folder and extracted there.
    archive = shutil.make_archive(str(tmp_path / "ml-zip"), "zip", root_dir=tmp_path, base_dir="ml-synthetic")
    fileio.copy_file(archive, fileio.join(ram_root, "ml-zip.zip"))
    zipped = load_movielens(fileio.join(ram_root, "ml-zip.zip"), cache_dir=tmp_path / "cache")
    assert zipped.users == expected.users and len(zipped.ratings) == len(expected.ratings)


def test_index_publish_to_ram_and_load_back(ram_root: str) -> None:
    import numpy as np
    from index_testkit import UNTIMED_LATENCY_MS, build_numpy_version, clustered_vectors

    from index import layout, metadata
    from index.builder import Gate, VersionExistsError, build_index_version
    from index.embed import Embeddings
    from index.live import LiveIndex
    from index.similarity import Similarity

    rng = np.random.default_rng(0)
    users, movies = clustered_vectors(40, 8, 4, rng), clustered_vectors(30, 8, 4, rng)
    index_dir = fileio.join(ram_root, "index")
    assert layout.read_latest(index_dir) is None and layout.latest_stamp(index_dir) is None

    result = build_numpy_version(index_dir, "101", users, movies)
    assert result.passed and result.folder == f"{index_dir}/101"
    assert layout.read_latest(index_dir) == "101"
    # Only the version and LATEST: no .tmp-* upload left behind.
    assert fileio.listdir(index_dir) == ["101", layout.LATEST]
    manifest = layout.read_json(fileio.join(index_dir, "101", layout.MANIFEST))
    assert set(manifest["files"]) <= set(fileio.listdir(fileio.join(index_dir, "101")))

    folder = layout.latest_version_dir(index_dir)
    assert folder == f"{index_dir}/101"
    similarity = Similarity.load(folder)  # copied locally, sha256-verified, loaded
    assert similarity.version == "101" and similarity.folder == folder
    assert similarity.n_users == 40 and similarity.n_movies == 30
    assert len(similarity.similar_movies(1, 5)) == 5
    assert len(similarity.recommend(1, 5)) == 5

    with pytest.raises(VersionExistsError):
        build_numpy_version(index_dir, "101", users, movies)

    live = LiveIndex(index_dir)
    assert live.refresh() and live.current.version == "101"
    assert not live.refresh()  # LATEST unchanged: nothing to reload
    build_numpy_version(index_dir, "102", users * 2, movies)
    assert layout.read_latest(index_dir) == "102"
    assert live.refresh() and live.current.version == "102"
    assert live.current.folder == f"{index_dir}/102"

    # --overwrite replaces a published version in place (the old one is moved aside first).
    emb = Embeddings(np.arange(1, 41), users, np.arange(1, 31), movies)
    users_meta = [metadata.placeholder_user(i) for i in range(1, 41)]
    movies_meta = [{"movie_id": i, "title": f"Movie {i}", "year": 1990, "genres": ["Drama"]}
                   for i in range(1, 31)]
    seen = metadata.seen_csr(emb.user_ids, emb.movie_ids, np.array([1, 2]), np.array([3, 4]))
    again = build_index_version(index_dir, "102", emb, users_meta, movies_meta, seen,
                                gate=Gate(max_latency_ms=UNTIMED_LATENCY_MS), latency_queries=30, overwrite=True)
    assert again.passed and fileio.listdir(index_dir) == ["101", "102", layout.LATEST]
    assert layout.read_json(fileio.join(index_dir, "102", layout.MANIFEST))["build_id"] == \
        again.manifest["build_id"]
    assert Similarity.load(layout.latest_version_dir(index_dir)).seen(1).tolist() == [3]


def test_index_gate_failure_keeps_latest_on_ram(ram_root: str) -> None:
    import numpy as np
    from index_testkit import build_numpy_version, clustered_vectors

    from index import layout
    from index.builder import Gate

    rng = np.random.default_rng(1)
    users, movies = clustered_vectors(20, 4, 2, rng), clustered_vectors(15, 4, 2, rng)
    index_dir = fileio.join(ram_root, "index")
    assert build_numpy_version(index_dir, "1", users, movies).passed
    failed = build_numpy_version(index_dir, "2", users, movies, gate=Gate(max_latency_ms=0.0))
    assert not failed.passed and failed.folder is None
    assert layout.read_latest(index_dir) == "1" and fileio.listdir(index_dir) == ["1", layout.LATEST]


def test_export_job_reads_model_and_data_from_ram_and_publishes_there(ram_root: str, tmp_path: Path,
                                                                      capsys) -> None:
    """export-index with every path a URI: SavedModel and MovieLens folder read through gfile,
    index built locally and uploaded, the `similar` CLI reading it back."""
    from index_testkit import UNTIMED_EXPORT, data_factors, save_tiny_model

    from data import synthetic_data
    from data.movielens_files import load_movielens
    from index import layout
    from index.export import EXIT_OK, main as export_main
    from index.similar import main as similar_main

    data_dir = tmp_path / "data"
    synthetic_data.generate(data_dir, n_users=40, n_movies=30, n_ratings=400, seed=2)
    data = load_movielens(data_dir)
    user_ids, user_vectors, movie_ids, movie_vectors = data_factors(data, rank=4)
    save_tiny_model(tmp_path / "model", user_ids, user_vectors, movie_ids, movie_vectors)

    remote_data = fileio.join(ram_root, "data", "ml")
    base = fileio.join(ram_root, "serving", "movielens")
    fileio.copy_tree(data_dir, remote_data)
    fileio.copy_tree(tmp_path / "model", fileio.join(base, "7"))
    index_dir = fileio.join(ram_root, "index")
    manifest_copy = fileio.join(ram_root, "outputs", "manifest.json")

    rc = export_main(["--model-base-path", base, "--data", remote_data, "--index-dir", index_dir,
                      "--output-manifest", manifest_copy, "--no-progress", *UNTIMED_EXPORT])
    assert rc == EXIT_OK
    assert layout.read_latest(index_dir) == "7"
    manifest = layout.read_json(manifest_copy)
    assert manifest["model_path"] == f"{base}/7" and manifest["data_source"] == remote_data
    assert manifest["dataset"] == "ml"  # the data by name: what /version shows
    assert manifest["counts"] == {"users": 40, "movies": 30, "seen_pairs": 400}
    capsys.readouterr()

    # Idempotent: the same model version is published already.
    assert export_main(["--model-base-path", base, "--data", remote_data, "--index-dir", index_dir,
                        "--no-progress"]) == EXIT_OK
    assert "already published" in capsys.readouterr().out

    assert similar_main(["--movie", str(int(movie_ids[0])), "-k", "3", "--index-dir", index_dir]) == 0
    out = capsys.readouterr().out
    assert f"Movie {int(movie_ids[0])}:" in out and "3 most similar movies" in out


def test_pusher_executor_pushes_to_a_ram_base_directory(ram_root: str, tmp_path: Path) -> None:
    """The Pusher executor's Do with the model, run history, base directory and output on ram://."""
    import json

    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts, standard_component_specs as specs
    from tfx.utils import proto_utils

    from components.pusher import MODEL_RUN_KEY, REPORT_DIR, Executor

    def artifact(kind, uri: str):
        a = kind()
        a.uri = uri
        return a

    model = artifact(standard_artifacts.Model, fileio.join(ram_root, "Trainer", "model", "5"))
    fileio.copy_tree(_fake_saved_model(tmp_path / "m", b"executor"), fileio.join(model.uri, "Format-Serving"))
    blessing = artifact(standard_artifacts.ModelBlessing, fileio.join(ram_root, "Evaluator", "blessing"))
    blessing.set_int_custom_property("blessed", 1)
    run = artifact(standard_artifacts.ModelRun, fileio.join(ram_root, "Trainer", "model_run"))
    fileio.write_text(fileio.join(run.uri, "history.json"),
                      json.dumps({"loss": [1.0], "rmse": [1.0], "val_rmse": [0.9], "best_epoch": 0}))
    pushed = artifact(standard_artifacts.PushedModel, fileio.join(ram_root, "Pusher", "pushed_model", "6"))
    base = fileio.join(ram_root, "serving", "movielens")
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base))
    inputs = {specs.MODEL_KEY: [model], specs.MODEL_BLESSING_KEY: [blessing], MODEL_RUN_KEY: [run]}
    props = {specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination)}

    Executor().Do(inputs, {specs.PUSHED_MODEL_KEY: [pushed]}, props)
    (version,) = fileio.listdir(base)
    assert version.isdigit() and pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_destination") == f"{base}/{version}"
    assert fileio.read_bytes(fileio.join(base, version, "saved_model.pb")) == b"executor"
    assert "best eval RMSE: 0.9000" in fileio.read_text(fileio.join(base, version, REPORT_DIR, "report.md"))
    assert fileio.read_bytes(fileio.join(pushed.uri, "saved_model.pb")) == b"executor"

    # The same model again (a cached Trainer re-blessed): no second version.
    again = artifact(standard_artifacts.PushedModel, fileio.join(ram_root, "Pusher", "pushed_model", "7"))
    Executor().Do(inputs, {specs.PUSHED_MODEL_KEY: [again]}, props)
    assert fileio.listdir(base) == [version]
    assert again.get_string_custom_property("pushed_version") == version


def test_run_data_flag_accepts_a_uri(ram_root: str, tmp_path: Path) -> None:
    """`movielens-tfx run --data gs://...`: the folder (or the one data set below it) is used in place."""
    from common.errors import UserError
    from data import synthetic_data
    from pipeline.run import resolve_data
    from settings.paths import ArtifactPaths

    synthetic_data.generate(tmp_path / "ml", n_users=10, n_movies=10, n_ratings=30, seed=0)
    fileio.copy_tree(tmp_path / "ml", fileio.join(ram_root, "datasets", "ml-x"))
    paths = ArtifactPaths(str(tmp_path / "artifacts"))
    assert resolve_data(fileio.join(ram_root, "datasets"), paths) == fileio.join(ram_root, "datasets", "ml-x")
    with pytest.raises(UserError, match="no such file or folder"):
        resolve_data(fileio.join(ram_root, "missing"), paths)
