"""Find movies by title: what the browse page's search box and ``GET /movies?query=`` ask.

Why a scan of one folded string instead of a search engine: a catalogue is thousands of titles
(ML-1M 3,883; ml-latest 60k), and ``str.find`` over all of them joined is a C loop that
visits only the matches, well under a millisecond per query at these sizes; nothing to build,
nothing to keep in sync with the index version it belongs to.

Matching is case- and accent-insensitive ("miserables" finds "Misérables, Les") and knows
MovieLens' habit of moving a leading article to the end: "The Matrix" finds "Matrix, The",
because each title is searchable in both orders. Results rank by how the query matched (the
whole title, its start, the start of a word, anywhere), then by how many users rated the
movie, then by title.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Sequence

import numpy as np

#: Articles MovieLens moves to the end of a title ("Matrix, The", "Misérables, Les").
TRAILING_ARTICLES = ("the", "a", "an", "la", "le", "les", "l'", "il", "el", "los", "las", "das",
                     "der", "die", "den", "det")
MAX_QUERY_CHARS = 200
_TRAILING = re.compile(r"^(.*), (" + "|".join(re.escape(a) for a in TRAILING_ARTICLES) + r")$")
# how a query matched a title, best first
EXACT, PREFIX, WORD, INSIDE = 0, 1, 2, 3


def fold(text: str) -> str:
    """Lower case, accents dropped, runs of white space as one space: what is compared."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.split())


def title_keys(title: str) -> list[str]:
    """The folded forms a title is found by: as written, and with a trailing article moved
    to the front ("matrix, the" and "the matrix")."""
    key = fold(title)
    moved = _TRAILING.match(key)
    return [key, f"{moved.group(2)} {moved.group(1)}".replace("l' ", "l'")] if moved else [key]


class TitleSearch:
    """All titles of one index version, folded and joined by newlines (which no folded title
    holds), with each key's start offset and movie row."""

    def __init__(self, titles: Sequence[str], popularity: np.ndarray) -> None:
        if len(popularity) != len(titles):
            raise ValueError(f"{len(titles)} titles but {len(popularity)} popularity counts")
        keys, rows, folded = [], [], []
        for row, title in enumerate(titles):
            forms = title_keys(str(title))
            folded.append(forms[0])  # the title as written, folded: the last tie-break
            keys.extend(forms)
            rows.extend([row] * len(forms))
        self._text = "\n" + "\n".join(keys) + "\n"
        lengths = np.fromiter((len(k) for k in keys), np.int64, len(keys))
        self._starts = 1 + np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64)
        self._lengths = lengths
        self._rows = np.asarray(rows, np.int64)
        self._titles = folded
        self._popularity = np.asarray(popularity, np.int64)

    def search(self, query: str, limit: int) -> tuple[list[int], int]:
        """(movie rows of the best ``limit`` matches, how many movies matched in all)."""
        q = fold(query)
        if not q or "\n" in q:
            return [], 0
        text = self._text
        positions = np.fromiter((m.start() for m in re.finditer(re.escape(q), text)), np.int64)
        if not len(positions):
            return [], 0
        key = np.searchsorted(self._starts, positions, side="right") - 1
        offset = positions - self._starts[key]
        before = np.array([text[p - 1] for p in positions.tolist()])
        kind = np.where(offset == 0, np.where(self._lengths[key] == len(q), EXACT, PREFIX),
                        np.where(np.char.isalnum(before), INSIDE, WORD))
        rows = self._rows[key]
        best = np.full(len(self._popularity), INSIDE + 1, np.int64)
        np.minimum.at(best, rows, kind)
        matched = np.flatnonzero(best <= INSIDE)
        order = sorted(matched.tolist(), key=lambda r: (best[r], -self._popularity[r], self._titles[r], r))
        return order[:limit], len(matched)
