"""index.title_search: what the browse page's search box finds, on made-up and real titles."""
from __future__ import annotations

import numpy as np
import pytest

from data.movielens_files import load_movielens
from index.title_search import TitleSearch, fold, title_keys

TITLES = ["Toy Story", "Toys", "Story of Us, The", "Matrix, The", "Misérables, Les", "Babe",
          "Enfant, L'", "Tom & Jerry: \"The Movie\"", "Boys Toy"]
RATED_BY = np.array([90, 10, 5, 80, 3, 20, 1, 2, 50])


def _titles(rows: list[int]) -> list[str]:
    return [TITLES[r] for r in rows]


def test_fold_ignores_case_accents_and_spacing():
    assert fold("  MisÉrables,\tLes ") == "miserables, les"
    assert title_keys("Matrix, The") == ["matrix, the", "the matrix"]
    assert title_keys("Enfant, L'") == ["enfant, l'", "l'enfant"]
    assert title_keys("Toy Story") == ["toy story"]


@pytest.mark.parametrize("query, expected", [
    ("toy", ["Toy Story", "Toys", "Boys Toy"]),           # prefixes (most rated first), then a word
    ("TOYS", ["Toys"]),
    ("the matrix", ["Matrix, The"]),                     # MovieLens' trailing article, both orders
    ("miserables", ["Misérables, Les"]),                 # accents folded
    ("l'enfant", ["Enfant, L'"]),
    ('& jerry: "the', ['Tom & Jerry: "The Movie"']),    # punctuation is literal text, not a pattern
    ("story", ["Story of Us, The", "Toy Story"]),        # a title's start beats a later word
    (".*", []),
])
def test_queries_rank_whole_title_prefix_word_then_inside(query, expected):
    rows, total = TitleSearch(TITLES, RATED_BY).search(query, 10)
    assert _titles(rows) == expected and total == len(expected)


def test_limit_cuts_the_list_but_total_counts_every_match():
    search = TitleSearch(TITLES, RATED_BY)
    rows, total = search.search("o", 2)
    assert len(rows) == 2 and total == sum("o" in fold(t) for t in TITLES)
    assert search.search("   ", 5) == ([], 0)
    exact, _ = search.search("toys", 5)
    assert _titles(exact) == ["Toys"]


def test_exact_title_ranks_above_a_more_rated_prefix_match():
    rows, _ = TitleSearch(["Babe", "Babe: Pig in the City"], np.array([1, 100])).search("babe", 5)
    assert rows == [0, 1]


def test_real_ml1m_titles(shared_data):
    data = load_movielens(shared_data / "ml-1m", ratings_csv=shared_data / "ml-1m" / "ratings-no-timestamps.csv")
    ids = sorted(data.movies)
    rated_by = np.bincount(np.searchsorted(ids, data.ratings.movie_id), minlength=len(ids))
    search = TitleSearch([data.movies[i].title for i in ids], rated_by)
    rows, total = search.search("Toy", 5)
    assert [data.movies[ids[r]].title for r in rows[:2]] == ["Toy Story", "Toy Story 2"]
    assert total == sum("toy" in fold(data.movies[i].title) for i in ids)
    rows, _ = search.search("the godfather", 3)
    assert data.movies[ids[rows[0]]].title == "Godfather, The"
