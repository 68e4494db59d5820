"""Synthetic MovieLens data in the exact ML-1M or ML-25M file format, with a planted latent structure.

Why: MovieLens may not be redistributed, so tests, CI and demos need stand-in data that (a)
goes through exactly the same loader as the real files (ML-1M's ``users.dat``, ``movies.dat``,
``ratings.dat``: ``::``-separated, Latin-1, LF; or today's format, as ML-20M/25M/32M and
ml-latest write it: ``movies.csv`` with quoted titles, ``ratings.csv`` with half stars, UTF-8,
no users file), and (b) has *known* structure, so a test
can assert that a model learned something: every movie belongs to a planted cluster that
decides its genres, its title words and which users like it, and the ratings follow

    rating = round(clip(mu + user_bias + movie_bias + user_factor . movie_factor + noise, 1, 5))
    (to the nearest half star, clipped to 0.5..5, in today's format)

tuned so that predicting the global mean gives RMSE ~1.1 while the noise-free score (the
"oracle") gives ~0.85, with a MovieLens-like rating distribution (mostly 3 and 4).

Output is deterministic: the same arguments and seed give byte-identical files.

CLI: ``python -m data.synthetic_data --out DIR --size tiny|small|demo|ml-1m|100k|5m|25m``.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from common.metrics import rmse
from data.features import AGE_CODES, GENDERS, NUM_OCCUPATIONS
from data.movielens_types import FMT_ML_1M, FMT_ML_LATEST, ML_1M_GENRES, ML_LATEST_MOVIES_HEADER, NO_GENRES_LISTED

__all__ = ["SIZES", "generate", "main", "size_kwargs"]

#: name -> (n_users, n_movies, n_ratings). 'ml-1m' matches the real data set's shape.
SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (200, 120, 6_000),
    "small": (1_000, 600, 60_000),
    "demo": (2_000, 1_000, 150_000),
    "ml-1m": (6_040, 3_883, 1_000_209),
    # cost growth (benchmarks.pipeline_bench --growth): ML-1M's 165 ratings per user and its
    # catalogue at 1/10 the ratings; ML-25M's shape at 1/5 and in full (its users, movies and
    # ratings), in ML-25M's own format
    "100k": (604, 3_883, 100_000),
    "5m": (32_508, 12_485, 5_000_000),
    "25m": (162_541, 62_423, 25_000_095),
}
#: the file format of each size (every other size is ML-1M's)
SIZE_FORMATS: dict[str, str] = {"5m": FMT_ML_LATEST, "25m": FMT_ML_LATEST}
FORMATS = (FMT_ML_1M, FMT_ML_LATEST)

ENCODING = "latin-1"


def size_kwargs(size: str) -> dict[str, int]:
    """``generate`` keyword arguments for a preset of SIZES (so callers never unpack tuples)."""
    if size not in SIZES:
        raise ValueError(f"unknown synthetic size {size!r}; expected one of {sorted(SIZES)}")
    n_users, n_movies, n_ratings = SIZES[size]
    return {"n_users": n_users, "n_movies": n_movies, "n_ratings": n_ratings,
            "fmt": SIZE_FORMATS.get(size, FMT_ML_1M)}

# --- planted structure ---------------------------------------------------------------------
# Each theme: (characteristic genres, title vocabulary). Cluster c uses theme c % len(_THEMES).
_THEMES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("Action", "Adventure", "Thriller"),
     ("Fury", "Strike", "Bullet", "Steel", "Thunder", "Force", "Target", "Assault", "Commando",
      "Rage", "Impact", "Blast", "Fist", "Venom", "Hunter", "Fire", "Warrior", "Mission",
      "Payback", "Velocity")),
    (("Romance", "Drama", "Comedy"),
     ("Kiss", "Wedding", "Summer", "Heartbreak", "Valentine", "Bride", "Paris", "Promise",
      "Sweet", "Moonlight", "Darling", "Roses", "Letters", "Forever", "Dance", "Honey",
      "Romance", "Tender", "Sunset", "Embrace")),
    (("Horror", "Thriller"),
     ("Blood", "Scream", "Haunting", "Curse", "Grave", "Demon", "Nightmare", "Shadow", "Terror",
      "Crypt", "Ghoul", "Witch", "Fear", "Evil", "Zombie", "Corpse", "Possession", "Massacre",
      "Howl", "Skull")),
    (("Sci-Fi", "Action", "Adventure"),
     ("Galaxy", "Planet", "Star", "Robot", "Alien", "Orbit", "Quantum", "Cyborg", "Nebula",
      "Android", "Mars", "Cosmos", "Future", "Space", "Laser", "Asteroid", "Colony", "Signal",
      "Gravity", "Voyager")),
    (("Children's", "Animation", "Comedy", "Musical"),
     ("Puppy", "Dragon", "Magic", "Bunny", "Toy", "Kitten", "Treasure", "Wonder", "Rainbow",
      "Giant", "Elf", "Pony", "Jungle", "Castle", "Pirate", "Princess", "Balloon", "Candy",
      "Snowman", "Pet")),
    (("Crime", "Film-Noir", "Thriller", "Mystery"),
     ("Heist", "Murder", "Detective", "Alibi", "Mob", "Ransom", "Gangster", "Witness",
      "Betrayal", "Smoke", "Cop", "Vice", "Money", "Score", "Verdict", "Motive", "Suspect",
      "Syndicate", "Contract", "Dirty")),
    (("Drama", "War"),
     ("Soldier", "Battle", "Memory", "Silence", "Winter", "Harbor", "River", "Father", "Mother",
      "Brothers", "Exile", "Honor", "Glory", "Duty", "Stone", "Journey", "Field", "Widow",
      "Fortress", "Sorrow")),
    (("Comedy",),
     ("Crazy", "Party", "Wacky", "Dumb", "Vacation", "Spy", "Funny", "Nutty", "Goofy",
      "Bachelor", "Roommates", "Holiday", "Weekend", "Trouble", "Boss", "Neighbors", "Pajama",
      "Chaos", "Loony", "Jokers")),
    (("Western", "Action"),
     ("Saddle", "Canyon", "Outlaw", "Sheriff", "Gunfight", "Frontier", "Rider", "Ranch", "Dust",
      "Gold", "Stallion", "Desperado", "Prairie", "Bounty", "Rustler", "Mesa", "Posse", "Spur",
      "Drifter", "Coyote")),
    (("Documentary", "Musical"),
     ("Voices", "Rhythm", "Portrait", "Truth", "Concert", "Songs", "Inside", "Chronicle",
      "Frames", "Anthem", "Echoes", "Melody", "Witnesses", "Archive", "Stage", "Tour",
      "Harmony", "Chorus", "Footage", "Ballad")),
)
#: Words any title may use; the accented ones exercise the Latin-1 encoding, as in ML-1M.
_SHARED_WORDS = (
    "Night", "Love", "Last", "Return", "Man", "Story", "Day", "Life", "Dark", "Lost", "Secret",
    "City", "World", "Home", "Little", "Dead", "Big", "Blue", "Time", "House", "Girl", "King",
    "Road", "Heart", "Café", "Noël", "Señor", "Déjà",
)
_THE_SUFFIX_P = 0.12          # "American President, The" style titles
_OWN_WORD_P = 0.8             # share of title words from the movie's cluster vocabulary
_OWN_GENRE_P = 0.9            # share of genres from the cluster's characteristic genres
_TITLE_WORDS_P = (0.12, 0.33, 0.27, 0.15, 0.08, 0.05)   # 1..6 words
_N_GENRES_P = (0.5, 0.35, 0.15)                          # 1..3 genres
_OWN_CLUSTER_PICK_P = 0.35    # users pick movies of their own cluster more often
# --- activity and popularity, shaped like ML-1M (whose movies' rating counts have a
# coefficient of variation of 1.42, 18 % of them under 20 ratings, and whose users each rated
# at least 20 movies, CV 1.16): lognormal spreads of user activity and movie popularity.
_USER_ACTIVITY_SD = 1.1
_MOVIE_POPULARITY_SD = 1.5
_MIN_USER_RATINGS = 20        # ML-1M's rule (fewer when n_ratings / n_users is smaller)

# --- rating model (tuned: global-mean RMSE ~1.1, oracle RMSE ~0.85, mostly 3s and 4s) -------
_MEAN_RATING = 3.62
_USER_BIAS_SD = 0.45
_MOVIE_BIAS_SD = 0.5
_AFFINITY_SD = 0.45           # user's taste for each cluster
_OWN_AFFINITY = 0.45          # extra taste for the user's own cluster
_MOVIE_FACTOR_NOISE_SD = 0.2  # movies are not pure cluster prototypes
_NOISE_SD = 0.88

# --- demographics, shaped like ML-1M -------------------------------------------------------
_AGE_P = (222, 1103, 2096, 1193, 550, 496, 380)          # per AGE_CODES entry
_OCCUPATION_P = (711, 528, 267, 173, 759, 112, 236, 679, 17, 92, 195, 129, 388, 142, 302,
                 144, 241, 502, 70, 72, 281)             # per occupation code
_MALE_P = 0.72
_FIRST_TS, _LAST_TS = 956_703_932, 1_046_454_590         # ML-1M's timestamp range

for _genres, _ in _THEMES:  # the files are ML-1M's format: theme genres are ML-1M genre names
    assert set(_genres) <= set(ML_1M_GENRES), _genres
assert len(_AGE_P) == len(AGE_CODES) and len(_OCCUPATION_P) == NUM_OCCUPATIONS


def _normalised(weights: Sequence[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()


def _sample_pairs(rng: np.random.Generator, n_users: int, n_movies: int, n_ratings: int,
                  user_cluster: np.ndarray, movie_cluster: np.ndarray, n_clusters: int,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, movie) pairs: every user about _MIN_USER_RATINGS times (at least once),
    skewed user activity and movie popularity, and a preference for movies of the user's own
    cluster (selection bias, as in real data)."""
    activity = rng.lognormal(0.0, _USER_ACTIVITY_SD, n_users)
    popularity = rng.lognormal(0.0, _MOVIE_POPULARITY_SD, n_movies)
    user_p = activity / activity.sum()
    movie_p = popularity / popularity.sum()
    by_cluster = [np.flatnonzero(movie_cluster == c) for c in range(n_clusters)]
    cluster_p = [popularity[m] / popularity[m].sum() for m in by_cluster]

    def draw_movies(users: np.ndarray) -> np.ndarray:
        movies = rng.choice(n_movies, size=len(users), p=movie_p)
        own = np.flatnonzero(rng.random(len(users)) < _OWN_CLUSTER_PICK_P)
        own_cluster = user_cluster[users[own]]
        for c in range(n_clusters):
            idx = own[own_cluster == c]
            movies[idx] = rng.choice(by_cluster[c], size=len(idx), p=cluster_p[c])
        return movies

    # every user's first draws (duplicates dropped below): at least one rating each
    first_users = np.repeat(np.arange(n_users), max(1, min(_MIN_USER_RATINGS, n_ratings // n_users)))
    candidates = first_users * n_movies + draw_movies(first_users)
    _, first = np.unique(candidates, return_index=True)
    keys = candidates[np.sort(first)]
    for _ in range(40):
        need = n_ratings - len(keys)
        if need <= 0:
            break
        users = rng.choice(n_users, size=int(need * 1.25) + 64, p=user_p)
        candidates = np.concatenate([keys, users * n_movies + draw_movies(users)])
        _, first = np.unique(candidates, return_index=True)
        keys = candidates[np.sort(first)]  # keep first occurrences, in draw order
    if len(keys) < n_ratings:  # very dense request: fill uniformly from the unused cells
        unused = np.setdiff1d(np.arange(n_users * n_movies), keys)
        keys = np.concatenate([keys, rng.choice(unused, n_ratings - len(keys), replace=False)])
    keys = keys[:n_ratings]
    return keys // n_movies, keys % n_movies


def _titles(rng: np.random.Generator, movie_cluster: np.ndarray, years: np.ndarray,
            n_clusters: int) -> list[str]:
    titles = []
    shared = np.array(_SHARED_WORDS)
    pools = [np.array(_THEMES[c % len(_THEMES)][1]) for c in range(n_clusters)]
    for cluster, year in zip(movie_cluster.tolist(), years.tolist()):
        n_words = int(rng.choice(len(_TITLE_WORDS_P), p=_TITLE_WORDS_P)) + 1
        n_own = int(rng.binomial(n_words, _OWN_WORD_P))
        words = list(rng.choice(pools[cluster], n_own, replace=False))
        words += list(rng.choice(shared, n_words - n_own, replace=False))
        words = [str(w) for w in rng.permutation(words)]
        title = " ".join(words)
        if rng.random() < _THE_SUFFIX_P:
            title += ", The"
        titles.append(f"{title} ({year})")
    return titles


def _genres(rng: np.random.Generator, movie_cluster: np.ndarray, n_clusters: int) -> list[str]:
    out = []
    for cluster in movie_cluster.tolist():
        pool = _THEMES[cluster % len(_THEMES)][0]
        n = int(rng.choice(len(_N_GENRES_P), p=_N_GENRES_P)) + 1
        chosen: set[str] = set()
        for _ in range(n):
            if rng.random() < _OWN_GENRE_P:
                chosen.add(pool[int(rng.integers(len(pool)))])
            else:
                chosen.add(ML_1M_GENRES[int(rng.integers(len(ML_1M_GENRES)))])
        out.append("|".join(g for g in ML_1M_GENRES if g in chosen))  # canonical order
    return out


#: ML-1M's genre names as today's format spells them
_LATEST_GENRE_NAMES = {"Children's": "Children"}
_IMAX_P, _NO_GENRE_P = 0.03, 0.01   # ML-25M: 195 IMAX movies of 62,423, 5,062 without genres
_CHUNK = 1_000_000                   # rating lines formatted and written at a time


def _write_latest(out_dir: Path, seed: int, titles: list[str], genres: list[str],
                  u: np.ndarray, m: np.ndarray, rating: np.ndarray, timestamp: np.ndarray) -> dict[str, Path]:
    """movies.csv (``movieId,title,genres``, titles quoted where they hold a comma or a quote,
    "(no genres listed)" for none) and ratings.csv (``userId,movieId,rating,timestamp``, half
    stars as ``3.5``), UTF-8 with LF, as ML-25M writes them; no users file. Its own random
    stream (IMAX, no-genre movies), so the ML-1M files of a seed never change."""
    rng = np.random.default_rng([seed, 25])
    imax, bare = rng.random(len(titles)) < _IMAX_P, rng.random(len(titles)) < _NO_GENRE_P
    files = {"movies.csv": out_dir / "movies.csv", "ratings.csv": out_dir / "ratings.csv"}
    with open(files["movies.csv"], "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(ML_LATEST_MOVIES_HEADER)
        for i, (title, names) in enumerate(zip(titles, genres)):
            listed = [_LATEST_GENRE_NAMES.get(g, g) for g in names.split("|") if g] + (["IMAX"] if imax[i] else [])
            writer.writerow((i + 1, title, NO_GENRES_LISTED if bare[i] or not listed else "|".join(listed)))
    text = np.array([f"{r:.1f}" for r in np.arange(0.5, 5.01, 0.5)])
    with open(files["ratings.csv"], "w", encoding="utf-8", newline="\n") as handle:
        handle.write("userId,movieId,rating,timestamp\n")
        for start in range(0, len(u), _CHUNK):
            part = slice(start, start + _CHUNK)
            stars = text[(rating[part] * 2).astype(np.int64) - 1].tolist()
            handle.write("".join(f"{a},{b},{r},{t}\n" for a, b, r, t in zip(
                (u[part] + 1).tolist(), (m[part] + 1).tolist(), stars, timestamp[part].tolist())))
    return files


def _write(path: Path, lines: list[str]) -> None:
    with open(path, "w", encoding=ENCODING, newline="\n") as f:
        f.write("\n".join(lines))
        f.write("\n")


def generate(out_dir: Path, *, n_users: int, n_movies: int, n_ratings: int, seed: int = 0,
             n_clusters: int = 8, fmt: str = FMT_ML_1M) -> dict:
    """Write users.dat, movies.dat, ratings.dat (``fmt`` ML-1M) or movies.csv and ratings.csv
    (``fmt`` ml-latest: ML-25M's format) and clusters.json to ``out_dir``.

    ``clusters.json`` holds the planted truth (``movie_cluster``/``user_cluster``: id ->
    cluster, plus each cluster's genres and title words) so that tests can check that models
    and features recover it. Returns a summary: counts, the rating distribution, the global
    mean and the RMSE of the global mean and of the noise-free oracle.
    """
    if n_users < 1 or n_clusters < 1 or n_movies < n_clusters:
        raise ValueError(f"need n_users >= 1 and n_movies >= n_clusters >= 1 "
                         f"(got n_users={n_users}, n_movies={n_movies}, n_clusters={n_clusters})")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    if not n_users <= n_ratings <= n_users * n_movies:
        raise ValueError(f"n_ratings must be between n_users ({n_users}) and n_users*n_movies "
                         f"({n_users * n_movies}); got {n_ratings}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    # --- movies: cluster, year, genres, title --------------------------------------------
    cluster_share = rng.dirichlet(np.full(n_clusters, 5.0))
    movie_cluster = rng.choice(n_clusters, size=n_movies, p=cluster_share)
    movie_cluster[rng.permutation(n_movies)[:n_clusters]] = np.arange(n_clusters)  # none empty
    cluster_year = rng.uniform(1955, 1996, n_clusters)
    years = np.clip(np.rint(rng.normal(cluster_year[movie_cluster], 10.0)), 1919, 2000).astype(int)
    genres = _genres(rng, movie_cluster, n_clusters)
    titles = _titles(rng, movie_cluster, years, n_clusters)

    # --- users: demographics and taste ------------------------------------------------------
    user_cluster = rng.choice(n_clusters, size=n_users, p=cluster_share)
    gender = np.where(rng.random(n_users) < _MALE_P, GENDERS[0], GENDERS[1])
    age = np.asarray(AGE_CODES)[rng.choice(len(AGE_CODES), n_users, p=_normalised(_AGE_P))]
    occupation = rng.choice(NUM_OCCUPATIONS, n_users, p=_normalised(_OCCUPATION_P))
    zips = rng.integers(0, 100_000, n_users)

    user_bias = rng.normal(0.0, _USER_BIAS_SD, n_users)
    movie_bias = rng.normal(0.0, _MOVIE_BIAS_SD, n_movies)
    user_factor = rng.normal(0.0, _AFFINITY_SD, (n_users, n_clusters))
    user_factor[np.arange(n_users), user_cluster] += _OWN_AFFINITY
    movie_factor = rng.normal(0.0, _MOVIE_FACTOR_NOISE_SD, (n_movies, n_clusters))
    movie_factor[np.arange(n_movies), movie_cluster] += 1.0

    # --- ratings -----------------------------------------------------------------------------
    u, m = _sample_pairs(rng, n_users, n_movies, n_ratings, user_cluster, movie_cluster, n_clusters)
    interaction = np.einsum("ij,ij->i", user_factor[u], movie_factor[m])
    interaction -= interaction.mean()  # keep the global mean where _MEAN_RATING says
    expected = _MEAN_RATING + user_bias[u] + movie_bias[m] + interaction
    noisy = expected + rng.normal(0.0, _NOISE_SD, n_ratings)
    if fmt == FMT_ML_LATEST:  # half stars: to the nearest 0.5, round half up
        rating = np.floor(np.clip(noisy, 0.5, 5.0) * 2.0 + 0.5) / 2.0
    else:
        rating = np.floor(np.clip(noisy, 1.0, 5.0) + 0.5).astype(np.int64)  # round half up

    user_start = rng.uniform(_FIRST_TS, _FIRST_TS + 0.8 * (_LAST_TS - _FIRST_TS), n_users)
    timestamp = user_start[u] + rng.exponential(30 * 86_400.0, n_ratings)
    timestamp = np.minimum(timestamp, _LAST_TS).astype(np.int64)
    order = np.lexsort((m, timestamp, u))  # like ratings.dat: grouped by user
    u, m, rating, timestamp = u[order], m[order], rating[order], timestamp[order]
    expected = expected[order]

    # --- files --------------------------------------------------------------------------------
    if fmt == FMT_ML_LATEST:
        files = _write_latest(out_dir, seed, titles, genres, u, m, rating, timestamp)
    else:
        files = {name: out_dir / name for name in ("users.dat", "movies.dat", "ratings.dat")}
        _write(files["users.dat"], [
            f"{i}::{g}::{a}::{o}::{z:05d}" for i, g, a, o, z in zip(
                range(1, n_users + 1), gender.tolist(), age.tolist(), occupation.tolist(),
                zips.tolist())])
        _write(files["movies.dat"], [
            f"{i}::{t}::{g}" for i, t, g in zip(range(1, n_movies + 1), titles, genres)])
        _write(files["ratings.dat"], [
            f"{a}::{b}::{r}::{t}" for a, b, r, t in zip(
                (u + 1).tolist(), (m + 1).tolist(), rating.tolist(), timestamp.tolist())])
    files["clusters.json"] = out_dir / "clusters.json"
    truth = {
        "seed": seed,
        "n_clusters": n_clusters,
        "cluster_genres": [list(_THEMES[c % len(_THEMES)][0]) for c in range(n_clusters)],
        "cluster_words": [list(_THEMES[c % len(_THEMES)][1]) for c in range(n_clusters)],
        "movie_cluster": {str(i + 1): int(c) for i, c in enumerate(movie_cluster.tolist())},
        "user_cluster": {str(i + 1): int(c) for i, c in enumerate(user_cluster.tolist())},
    }
    files["clusters.json"].write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")

    mean = float(rating.mean())
    return {
        "out_dir": str(out_dir),
        "files": {k: str(v) for k, v in files.items()},
        "n_users": n_users,
        "n_movies": n_movies,
        "n_ratings": n_ratings,
        "n_clusters": n_clusters,
        "seed": seed,
        "format": fmt,
        "rating_counts": {(float(k) if fmt == FMT_ML_LATEST else int(k)): int(v)
                          for k, v in zip(*np.unique(rating, return_counts=True))},
        "global_mean": mean,
        "global_mean_rmse": rmse(np.full(rating.shape, mean), rating),
        "oracle_rmse": rmse(np.clip(expected, rating.min(), 5), rating),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the summary of ``generate`` as JSON."""
    sizes = ", ".join(f"{k}={v[0]}u/{v[1]}m/{v[2]}r" for k, v in SIZES.items())
    parser = argparse.ArgumentParser(
        prog="python -m data.synthetic_data",
        description="Write synthetic MovieLens data (users.dat, movies.dat, ratings.dat in the "
                    "exact ML-1M format, or movies.csv and ratings.csv in ML-25M's, plus "
                    "clusters.json with the planted structure). Same seed, same bytes.",
        epilog=f"sizes (users/movies/ratings): {sizes}")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny",
                        help="preset shape (default: tiny)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--n-ratings", type=int, default=None,
                        help="override the preset's number of ratings")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="file format (default: the size's; ml-latest for 5m and 25m, as ML-25M "
                             "writes it, ml-1m for the others)")
    parser.add_argument("--n-clusters", type=int, default=8,
                        help="planted movie/user clusters (default: 8)")
    args = parser.parse_args(argv)
    kwargs = size_kwargs(args.size)
    if args.n_ratings:
        kwargs["n_ratings"] = args.n_ratings
    if args.format:
        kwargs["fmt"] = args.format
    start = time.perf_counter()
    info = generate(args.out, **kwargs, seed=args.seed, n_clusters=args.n_clusters)
    info["seconds"] = round(time.perf_counter() - start, 2)
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
