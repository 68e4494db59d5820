"""What the model is built from: its input features, their vocabulary sizes and the training-only input.

Why its own module: the towers (model.towers, model.retrieval_towers), the assembled model
(model.model), the Trainer and the export all size and feed the model from these, and none
of them may import the others for it.
"""
from __future__ import annotations

from dataclasses import dataclass

from data import features as f

# Which transformed features each tower reads: from the feature table.
USER_INPUTS = f.USER_INPUTS
MOVIE_INPUTS = f.MOVIE_INPUTS
MODEL_INPUTS = f.MODEL_INPUTS
#: Training-only input: the example's own rating, removed from the user's history (model.rating_history).
TARGET_IN_HISTORY = "target_rating_in_history"


@dataclass
class Vocab:
    """Input cardinalities (vocabulary sizes incl. OOV buckets) read from the Transform output."""

    users: int
    movies: int
    occupations: int
    title_words: int  # ids 1..title_words; 0 is padding
    #: width of the genre multi-hot: the train split's genre vocabulary + its OOV slot (the
    #: data decides it: 18 ML-1M genres + 1, 19 ml-latest genres + 1)
    genres: int

    def width(self, feature: str) -> int:
        """The per-model size of a transformed feature's features.VOCAB_WIDTH dimension."""
        widths = {f.GENRES_XF: self.genres}
        if feature not in widths:
            raise KeyError(f"{feature!r} has no vocabulary-sized dimension")
        return widths[feature]
