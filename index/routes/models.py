"""The similarity service's response models: they are its OpenAPI schema (/openapi.json).

Why one module for all of them: the resources share them (a user's profile lists movies,
recommendations extend a movie hit), and the schema reads in one place.
"""
from __future__ import annotations

from pydantic import BaseModel, Field

from index.routes.dependencies import MAX_K, MAX_RERANK_WEIGHT
from index.similarity import MAX_CANDIDATES
from index.visitors import MAX_HISTORY


class MovieInfo(BaseModel):
    movie_id: int
    title: str
    year: int
    genres: list[str]


class MovieHit(MovieInfo):
    score: float


class UserInfo(BaseModel):
    user_id: int
    gender: str
    age: int
    age_group: str
    occupation: int
    occupation_name: str
    zip: str


class UserHit(UserInfo):
    score: float


class MovieMatch(MovieInfo):
    rated_by: int = Field(description="users who rated it (the index's seen map, every split)")


class MovieSearch(BaseModel):
    index_version: str
    model_version: str
    query: str
    total: int = Field(description="movies that matched; `results` holds the best `limit`")
    results: list[MovieMatch]


class RatedMovieInfo(MovieInfo):
    rating: float


class UserProfile(BaseModel):
    index_version: str
    model_version: str
    user: UserInfo
    seen_count: int = Field(description="movies the user rated (every split; excluded from "
                                        "recommendations)")
    rated_count: int = Field(description="of those, the ones with a training rating: the pool "
                                         "`top_rated` is taken from")
    top_rated_from: str | None = Field(description="where the ratings come from ('train split'); "
                                                   "null: the index version has none")
    top_rated: list[RatedMovieInfo]


class SimilarMovies(BaseModel):
    index_version: str
    model_version: str
    by: str
    metric: str
    query: MovieInfo
    ids: list[int]
    scores: list[float]
    results: list[MovieHit]


class SimilarUsers(BaseModel):
    index_version: str
    model_version: str
    metric: str
    query: UserInfo
    ids: list[int]
    scores: list[float]
    results: list[UserHit]


class RecommendedMovie(MovieHit):
    retrieval_score: float | None = Field(description="stage one: <query, candidate> (or the rating "
                                                      "towers' inner product without a retrieval space)")
    predicted_rating: float | None = Field(description="stage two: clip(<u, m> + biases) to the model's "
                                                       "rating scale (/version rating_scale: 1..5, or "
                                                       "0.5..5 in half stars); null without rating terms")


class Contribution(BaseModel):
    movie_id: int
    title: str
    year: int | None = None
    rating: float = Field(description="the rating the history gives the movie")
    contribution: float = Field(description="<the movie's term of the query, candidate>: its share "
                                            "of the retrieval score")


class ExplainedMovie(RecommendedMovie):
    retrieval_bias: float | None = Field(None, description="b_m, the candidate's bias: with every "
                                                           "history movie's contribution, the "
                                                           "retrieval score")
    because: list[Contribution] | None = Field(None, description="the history movies that add most to "
                                                                 "the retrieval score, largest first "
                                                                 "(null: the model could not be asked)")


class RankedList(BaseModel):
    """What every recommendation list says of itself: a user's, and a visitor's."""

    index_version: str
    model_version: str
    metric: str = Field(description="what `scores` are: 'retrieval_score + rerank_weight * "
                                    "predicted_rating' when both stages ran")
    stages: str = Field(description="'retrieval+rerank', 'retrieval', 'inner_product' (an index of "
                                    "a model without retrieval towers) or 'inner_product+rerank'")
    candidates: int = Field(description="movies stage one returned (max(candidates, k); k when "
                                        "there is no stage two)")
    rerank_weight: float


class Recommendations(RankedList):
    exclude_seen: bool
    seen_count: int
    query: UserInfo
    ids: list[int]
    scores: list[float]
    retrieval_scores: list[float | None]
    predicted_ratings: list[float | None]
    because_note: str | None = Field(None, description="why the results carry no `because`")
    results: list[ExplainedMovie]


class RatedByVisitor(BaseModel):
    movie_id: int = Field(description="a movie of the index version")
    rating: float = Field(description="within the index version's rating_scale (/version)")


class VisitorRatings(BaseModel):
    """POST /recommendations' body."""

    ratings: list[RatedByVisitor] = Field(description=f"the visitor's ratings, 1..{MAX_HISTORY}, each movie once")
    user_id: int | None = Field(None, description="a user of the index version whom these ratings are "
                                                  "of (a member who rated more since training): the "
                                                  "rating towers also read their id and demographics, "
                                                  "and all their seen movies are left out; null: a "
                                                  "visitor, whom only the ratings describe")
    k: int = Field(10, ge=1, le=MAX_K, description=f"number of results, 1..{MAX_K}")
    because: int = Field(3, ge=0, le=MAX_HISTORY, description=f"history movies listed per result, 0..{MAX_HISTORY}")
    candidates: int | None = Field(None, ge=1, le=MAX_CANDIDATES,
                                   description="movies FAISS returns for re-ranking (default: the index version's)")
    rerank_weight: float | None = Field(None, ge=-MAX_RERANK_WEIGHT, le=MAX_RERANK_WEIGHT,
                                        description="score = retrieval score + rerank_weight * predicted rating "
                                                    "(default: the index version's)")


class VisitorRecommendations(RankedList):
    stages_note: str | None = Field(description="why `stages` is 'retrieval' (the re-rank could not run); "
                                                "null when both ran")
    history_count: int
    ids: list[int]
    scores: list[float]
    results: list[ExplainedMovie]
