"""Tests of data.synthetic_data: format, determinism and the planted structure."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from data import features as F
from data.movielens_files import ML_1M_GENRES, load_movielens
from data.synthetic_data import SIZES, generate, main, size_kwargs

FILES = ("users.dat", "movies.dat", "ratings.dat", "clusters.json")


def gen(out: Path, size: str = "tiny", seed: int = 0, **kwargs) -> dict:
    return generate(out, **size_kwargs(size), seed=seed, **kwargs)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("small")
    return out, gen(out, "small", seed=7)


def test_sizes():
    assert SIZES == {"tiny": (200, 120, 6000), "small": (1000, 600, 60_000),
                     "demo": (2000, 1000, 150_000), "ml-1m": (6040, 3883, 1_000_209),
                     "100k": (604, 3883, 100_000), "5m": (32_508, 12_485, 5_000_000),
                     "25m": (162_541, 62_423, 25_000_095)}
    assert size_kwargs("small") == {"n_users": 1000, "n_movies": 600, "n_ratings": 60_000, "fmt": "ml-1m"}
    assert size_kwargs("25m")["fmt"] == size_kwargs("5m")["fmt"] == "ml-latest"
    with pytest.raises(ValueError, match="unknown synthetic size 'huge'"):
        size_kwargs("huge")


def test_round_trip_through_the_loader(tmp_path):
    info = gen(tmp_path)
    data = load_movielens(tmp_path)  # strict: any format problem raises
    assert data.fmt == "ml-1m" and data.bad_rows == []
    assert (len(data.users), len(data.movies), len(data.ratings)) == (200, 120, 6000)
    assert info["n_ratings"] == 6000 and sum(info["rating_counts"].values()) == 6000

    r = data.ratings
    pairs = r.user_id * 1_000_000 + r.movie_id
    assert len(np.unique(pairs)) == len(r)                       # each pair at most once
    assert set(r.user_id.tolist()) == set(data.users)            # every user rated
    assert set(np.unique(r.rating).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert (r.timestamp > 900_000_000).all()

    for user in data.users.values():
        assert user.gender in F.GENDERS and user.age in F.AGE_CODES
        assert 0 <= user.occupation < F.NUM_OCCUPATIONS and re.fullmatch(r"\d{5}", user.zip)
    for movie in data.movies.values():
        assert 1 <= len(movie.genres) <= 3 and set(movie.genres) <= set(ML_1M_GENRES)
        assert 1 <= len(movie.title.removesuffix(", The").split()) <= 6
        assert 1919 <= movie.year <= 2000


def test_ml25m_format_round_trip(tmp_path):
    """The 5m/25m sizes write ML-25M's own format: movies.csv with quoted titles and
    "(no genres listed)", ratings.csv with half stars, no users file; the loader reads it."""
    info = generate(tmp_path, n_users=300, n_movies=400, n_ratings=9_000, seed=4, fmt="ml-latest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clusters.json", "movies.csv", "ratings.csv"]
    lines = (tmp_path / "movies.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "movieId,title,genres"
    assert any(re.fullmatch(r'\d+,"[^"]+, The \(\d{4}\)",.+', line) for line in lines)  # quoted comma titles
    assert any(line.endswith(",(no genres listed)") for line in lines)
    assert any("IMAX" in line.split(",")[-1] for line in lines)
    ratings_text = (tmp_path / "ratings.csv").read_text(encoding="utf-8")
    assert ratings_text.startswith("userId,movieId,rating,timestamp\n")
    data = load_movielens(tmp_path)  # strict
    assert data.fmt == "ml-latest" and data.bad_rows == []
    assert (len(data.users), len(data.movies), len(data.ratings)) == (300, 400, 9_000)
    stars = np.unique(data.ratings.rating)
    assert set(stars.tolist()) <= set(np.arange(0.5, 5.01, 0.5).tolist()) and 0.5 in stars and 3.5 in stars
    assert sum(info["rating_counts"].values()) == 9_000 and info["format"] == "ml-latest"
    assert any(not movie.genres for movie in data.movies.values())
    assert any("," in movie.title for movie in data.movies.values())
    again = tmp_path / "again"
    generate(again, n_users=300, n_movies=400, n_ratings=9_000, seed=4, fmt="ml-latest")
    assert (again / "ratings.csv").read_bytes() == (tmp_path / "ratings.csv").read_bytes()
    with pytest.raises(ValueError, match="unknown format"):
        generate(tmp_path / "x", n_users=3, n_movies=8, n_ratings=9, fmt="ml-2m")


def test_exact_ml1m_bytes(tmp_path):
    gen(tmp_path, "small")
    for name in ("users.dat", "movies.dat", "ratings.dat"):
        raw = (tmp_path / name).read_bytes()
        assert b"\r" not in raw and raw.endswith(b"\n") and not raw.endswith(b"\n\n")
    movies = (tmp_path / "movies.dat").read_bytes().decode("latin-1").splitlines()
    title_line = re.compile(r"\d+::[^:]+ \((19\d\d|2000)\)::[A-Za-z'\-]+(\|[A-Za-z'\-]+){0,2}")
    assert all(title_line.fullmatch(line) for line in movies), movies[:3]
    assert sum(", The (" in line for line in movies) > 0.05 * len(movies)
    assert any(ord(ch) > 127 for line in movies for ch in line)  # Latin-1 titles, as in ML-1M
    assert sum(len(line.split("::")[1].split()) > 2 for line in movies) > 0.3 * len(movies)
    assert re.fullmatch(r"1::[MF]::\d+::\d+::\d{5}", (tmp_path / "users.dat").read_text().split("\n")[0])
    assert re.fullmatch(r"1::\d+::[1-5]::\d{9,10}", (tmp_path / "ratings.dat").read_text().split("\n")[0])


def test_deterministic_by_seed(tmp_path):
    gen(tmp_path / "a", seed=3)
    gen(tmp_path / "b", seed=3)
    gen(tmp_path / "c", seed=4)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "ratings.dat").read_bytes() != (tmp_path / "c" / "ratings.dat").read_bytes()


def test_clusters_json(tmp_path):
    gen(tmp_path, n_clusters=5)
    truth = json.loads((tmp_path / "clusters.json").read_text())
    assert truth["n_clusters"] == 5
    assert sorted(map(int, truth["movie_cluster"])) == list(range(1, 121))
    assert sorted(map(int, truth["user_cluster"])) == list(range(1, 201))
    assert set(truth["movie_cluster"].values()) == set(range(5))  # no empty cluster


def _pairwise_means(features: np.ndarray, cluster: np.ndarray) -> tuple[float, float]:
    """Mean Jaccard similarity of feature sets within and across clusters."""
    x = features.astype(np.float64)
    inter = x @ x.T
    sizes = x.sum(1)
    jaccard = inter / np.maximum(sizes[:, None] + sizes[None, :] - inter, 1)
    same = cluster[:, None] == cluster[None, :]
    off_diagonal = ~np.eye(len(cluster), dtype=bool)
    return float(jaccard[same & off_diagonal].mean()), float(jaccard[~same].mean())


def test_planted_clusters_show_in_genres_and_titles(small):
    out, _ = small
    data = load_movielens(out)
    truth = json.loads((out / "clusters.json").read_text())
    ids = sorted(data.movies)
    cluster = np.array([truth["movie_cluster"][str(i)] for i in ids])

    genres = np.array([[g in data.movies[i].genres for g in ML_1M_GENRES] for i in ids])
    within, across = _pairwise_means(genres, cluster)
    assert within > 3 * across, (within, across)

    vocab = sorted({w for i in ids for w in data.movies[i].title.split()})
    words = np.array([[w in data.movies[i].title.split() for w in vocab] for i in ids])
    within, across = _pairwise_means(words, cluster)
    assert within > 3 * across, (within, across)


def test_users_prefer_their_own_cluster(small):
    out, _ = small
    data = load_movielens(out)
    truth = json.loads((out / "clusters.json").read_text())
    r = data.ratings
    user_cluster = np.array([truth["user_cluster"][str(u)] for u in r.user_id.tolist()])
    movie_cluster = np.array([truth["movie_cluster"][str(m)] for m in r.movie_id.tolist()])
    own = user_cluster == movie_cluster
    assert r.rating[own].mean() - r.rating[~own].mean() > 0.25


def _fit_biases(u, m, r, n_users, n_movies, reg=5.0, iters=15):
    mu = r.mean()
    bu, bm = np.zeros(n_users + 1), np.zeros(n_movies + 1)
    for _ in range(iters):
        bm = np.bincount(m, r - mu - bu[u], n_movies + 1) / (np.bincount(m, None, n_movies + 1) + reg)
        bu = np.bincount(u, r - mu - bm[m], n_users + 1) / (np.bincount(u, None, n_users + 1) + reg)
    return mu, bu, bm


def test_learnable_signal_and_realistic_ratings(small):
    out, info = small
    data = load_movielens(out)
    r = data.ratings
    rng = np.random.default_rng(0)
    test = rng.random(len(r)) < 0.2
    u, m, y = r.user_id, r.movie_id, r.rating.astype(np.float64)
    mu, bu, bm = _fit_biases(u[~test], m[~test], y[~test], len(data.users), len(data.movies))
    rmse_mean = np.sqrt(np.mean((y[test] - mu) ** 2))
    rmse_bias = np.sqrt(np.mean((y[test] - np.clip(mu + bu[u[test]] + bm[m[test]], 1, 5)) ** 2))
    assert 1.0 < rmse_mean < 1.25, rmse_mean
    assert rmse_bias < rmse_mean - 0.08, (rmse_bias, rmse_mean)
    assert 0.75 < info["oracle_rmse"] < 0.95 and info["oracle_rmse"] < rmse_bias
    assert 1.0 < info["global_mean_rmse"] < 1.25

    share = np.bincount(y.astype(int), minlength=6)[1:] / len(y)
    assert share[2] + share[3] > 0.5           # mostly 3s and 4s
    assert share.argmax() in (2, 3) and share[0] < share[1] < share[2]
    assert 3.3 < y.mean() < 3.8

    per_movie = np.bincount(m)[1:]
    assert per_movie.max() > 5 * np.median(per_movie)  # popularity skew


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_ratings must be between"):
        generate(tmp_path, n_users=10, n_movies=10, n_ratings=5)
    with pytest.raises(ValueError, match="n_movies >= n_clusters"):
        generate(tmp_path, n_users=10, n_movies=4, n_ratings=20, n_clusters=8)


def test_dense_request_is_still_exact(tmp_path):
    info = generate(tmp_path, n_users=20, n_movies=10, n_ratings=190, n_clusters=2)
    data = load_movielens(tmp_path)
    assert len(data.ratings) == 190 == info["n_ratings"]
    assert len(np.unique(data.ratings.user_id * 100 + data.ratings.movie_id)) == 190


def test_cli(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "o"), "--size", "tiny", "--seed", "2",
                 "--n-ratings", "1000"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_ratings"] == 1000 and info["seed"] == 2
    assert len(load_movielens(tmp_path / "o").ratings) == 1000
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    assert "--size {100k,25m,5m,demo,ml-1m,small,tiny}" in help_text and "ml-1m=6040u/3883m/1000209r" in help_text
    assert "--format {ml-1m,ml-latest}" in help_text
