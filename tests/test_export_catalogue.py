"""export-index and explain without --data: they read the users, movies and seen map from the
model version's own catalogue (assets.extra/catalogue), so an index always describes the data
its model was trained on. A tiny SavedModel (index_testkit) stands in for a pushed model."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from index_testkit import UNTIMED_EXPORT, data_factors, save_tiny_model

from data import catalogue as cat, synthetic_data
from data.movielens_files import load_movielens
from index import layout
from index.export import EXIT_BAD_INPUT, EXIT_OK, main as export_main
from index.similarity import Similarity


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """Version 1 with a catalogue of *part* of the data (every other user's ratings), and a
    data folder on disk holding all of it: the index must follow the catalogue."""
    root = tmp_path_factory.mktemp("pushed")
    synthetic_data.generate(root / "data", **synthetic_data.size_kwargs("tiny"), seed=2)
    data = load_movielens(root / "data")
    user_ids, users, movie_ids, movies = data_factors(data)
    r = data.ratings
    base = root / "serving" / "movielens"
    save_tiny_model(base / "1", user_ids, users, movie_ids, movies)
    keep = r.user_id % 2 == 0
    catalogue = cat.build_catalogue(data.users, data.movies,
                                    {"train": (r.user_id[keep], r.movie_id[keep], r.rating[keep])},
                                    source=str(root / "data"))
    cat.write_catalogue(cat.model_catalogue_dir(base / "1"), catalogue)
    save_tiny_model(base / "2", user_ids, users, movie_ids, movies)  # an older push: no catalogue
    return {"root": root, "base": base, "catalogue": catalogue, "data": data}


def test_export_without_data_indexes_the_models_catalogue(pushed):
    index_dir = pushed["root"] / "index"
    assert export_main(["--model-base-path", str(pushed["base"]), "--version", "1",
                        "--index-dir", str(index_dir), "--no-progress", *UNTIMED_EXPORT]) == EXIT_OK
    manifest = json.loads((index_dir / "1" / layout.MANIFEST).read_text())
    c = pushed["catalogue"]
    assert manifest["counts"] == {"users": len(c.users), "movies": len(c.movies), "seen_pairs": len(c.seen_user_ids)}
    assert manifest["catalogue"] == cat.model_catalogue_dir(pushed["base"] / "1")
    assert manifest["data_source"] == c.source
    sim = Similarity.load(index_dir / "1")
    assert sim.info()["catalogue"] == manifest["catalogue"]  # what the service's /version shows
    seen = {}
    for u, m in zip(c.seen_user_ids.tolist(), c.seen_movie_ids.tolist()):
        seen.setdefault(u, set()).add(m)
    assert set(sim.seen(2).tolist()) == seen[2] and sim.seen(1).size == 0  # odd users: not in it
    # the catalogue's training ratings: user 2's top-rated movies, as the browse page lists them
    r = pushed["data"].ratings
    mine = {m: x for u, m, x in zip(r.user_id.tolist(), r.movie_id.tolist(), r.rating.tolist()) if u == 2}
    top = sim.top_rated(2, 5)
    assert [t.rating for t in top] == sorted(mine.values(), reverse=True)[:5]
    assert all(mine[t.id] == t.rating for t in top) and sim.top_rated(1, 5) == []
    assert manifest["seen_ratings"] is True and manifest["seen_ratings_from"] == "train split"
    movie = c.movies[1]
    assert sim.movie(1)["title"] == movie.title and sim.movie(1)["genres"] == list(movie.genres)


def test_data_stays_an_override(pushed, tmp_path):
    assert export_main(["--model-base-path", str(pushed["base"]), "--version", "1",
                        "--data", str(pushed["root"] / "data"), "--index-dir", str(tmp_path / "i"),
                        "--no-progress", *UNTIMED_EXPORT]) == EXIT_OK
    r = pushed["data"].ratings
    manifest = json.loads((tmp_path / "i" / "1" / layout.MANIFEST).read_text())
    assert manifest["counts"]["seen_pairs"] == len(set(zip(r.user_id.tolist(), r.movie_id.tolist())))
    assert manifest["catalogue"] is None
    assert manifest["seen_ratings_from"] == "all ratings in --data"


def test_a_model_without_catalogue_asks_for_data(pushed, tmp_path, capsys):
    rc = export_main(["--model-base-path", str(pushed["base"]), "--version", "2",
                      "--index-dir", str(tmp_path / "i"), "--no-progress"])
    assert rc == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "carries no catalogue" in err and "--data" in err
    assert export_main(["--model-base-path", str(pushed["base"]), "--version", "1", "--ratings", "x.csv",
                        "--index-dir", str(tmp_path / "i"), "--no-progress"]) == EXIT_BAD_INPUT


def test_explain_reads_the_models_catalogue(pushed):
    from commands.explain import explain

    out = io.StringIO()
    model_dir = pushed["base"] / "1"
    rating = explain(model_dir, None, 2, 1, k=3, out=out)
    text = out.getvalue()
    assert np.isfinite(rating) and f"predicted rating {rating:.2f}" in text  # the tiny model does not clip
    assert pushed["catalogue"].movies[1].title in text
    assert text.split("Users most similar")[1].split("Movies most similar")[0].count("  user ") == 3
