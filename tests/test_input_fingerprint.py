"""Content-keyed inputs (fingerprint, zip extraction) and the reconciliation of unfinished
ML-Metadata executions, without running a pipeline."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

from google.protobuf import json_format
from ml_metadata.proto import metadata_store_pb2
from tfx.proto import example_gen_pb2

from components import input_fingerprint as fp
from components.example_gen import make_custom_config
from components.example_gen_options import read_custom_config
from data.movielens_files import extract_zip

SPLITS = [example_gen_pb2.Input.Split(name="single_split", pattern="*")]


def _rewrite_same_size_and_mtime(path: Path, old: bytes, new: bytes) -> None:
    assert len(old) == len(new)
    st = path.stat()
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, 1))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_fingerprint_follows_content_of_folder_files_and_the_ratings_csv(tmp_path):
    folder, csv = tmp_path / "data", tmp_path / "r.csv"
    folder.mkdir()
    (folder / "users.dat").write_bytes(b"1::F::1::10::48067\n")
    csv.write_bytes(b"user,movie,rating\n1,1,5\n")
    key = lambda: fp.content_fingerprint(str(folder), SPLITS, {"ratings_csv": str(csv)})  # noqa: E731
    first = key()
    assert "users.dat=" in first and f"ratings_csv:{csv},bytes:24,sha256:" in first
    os.utime(folder / "users.dat", ns=(1, 1))  # touched, same content: same key
    os.utime(csv, ns=(1, 1))
    assert key() == first
    _rewrite_same_size_and_mtime(csv, b"1,1,5", b"1,1,4")  # same size and mtime, new content
    second = key()
    assert second != first
    _rewrite_same_size_and_mtime(folder / "users.dat", b"::F::", b"::M::")
    assert key() not in (first, second)


def test_driver_reads_the_ratings_path_from_custom_config():
    config = make_custom_config(ratings_csv="/x/r.csv", skip_bad_rows=True)
    as_json = json_format.MessageToJson(config)
    assert read_custom_config({"custom_config": as_json})["ratings_csv"] == "/x/r.csv"
    assert read_custom_config({}) == {}


def _zip(path: Path, text: str) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-1m/users.dat", text)


def test_zip_is_re_extracted_when_its_content_changes_at_the_same_size_and_mtime(tmp_path):
    archive = tmp_path / "ml-1m.zip"
    _zip(archive, "1::F::1::10::48067\n")
    st = archive.stat()
    dest = extract_zip(archive, tmp_path / "cache")
    assert (dest / "ml-1m" / "users.dat").read_text().startswith("1::F")
    _zip(archive, "1::M::1::10::48067\n")
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert archive.stat().st_size == st.st_size
    assert (extract_zip(archive, tmp_path / "cache") / "ml-1m" / "users.dat").read_text().startswith("1::M")


def test_reconcile_cancels_unfinished_executions_and_removes_their_folders(tmp_path):
    import ml_metadata as mlmd

    from pipeline import recovery

    db, root = tmp_path / "m.sqlite", tmp_path / "root"
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(db)
    store = mlmd.MetadataStore(config)
    node_type = store.put_context_type(metadata_store_pb2.ContextType(name="node"))
    exec_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name="Transform"))
    [ctx] = store.put_contexts([metadata_store_pb2.Context(type_id=node_type, name="movielens.Transform")])
    E = metadata_store_pb2.Execution
    ids = store.put_executions([E(type_id=exec_type, last_known_state=E.COMPLETE),
                                E(type_id=exec_type, last_known_state=E.RUNNING)])
    store.put_attributions_and_associations(
        [], [metadata_store_pb2.Association(context_id=ctx, execution_id=i) for i in ids])
    for i in ids:
        (root / "Transform" / "transform_graph" / str(i)).mkdir(parents=True)
    (root / "Transform" / ".system" / "executor_execution" / str(ids[1])).mkdir(parents=True)

    done = recovery.reconcile(str(db), str(root), "test")
    assert [(c.execution_id, c.node, len(c.removed)) for c in done] == [(ids[1], "Transform", 2)]
    states = [e.last_known_state for e in store.get_executions_by_id(ids)]
    assert states == [E.COMPLETE, E.CANCELED]
    assert (root / "Transform" / "transform_graph" / str(ids[0])).is_dir()
    assert not (root / "Transform" / "transform_graph" / str(ids[1])).exists()
    assert recovery.unfinished_executions(str(db)) == [] and recovery.reconcile(str(db), str(root), "x") == []


def test_run_lock_refuses_a_second_run_on_the_same_store(tmp_path):
    import pytest

    from common.errors import UserError
    from pipeline import recovery

    with recovery.run_lock(str(tmp_path / "m.sqlite")):
        with pytest.raises(UserError, match=rf"another run \(pid {os.getpid()}\)"):
            with recovery.run_lock(str(tmp_path / "m.sqlite")):
                pass
    with recovery.run_lock(str(tmp_path / "m.sqlite")):
        pass
