"""The similarity service's response models: they are its OpenAPI schema (/openapi.json).

Why one module for all of them: the resources share them (a user's profile lists movies,
recommendations extend a movie hit), and the schema reads in one place.
"""
from __future__ import annotations

from pydantic import BaseModel, Field


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


class Recommendations(BaseModel):
    index_version: str
    model_version: str
    metric: str = Field(description="what `scores` are: 'retrieval_score + rerank_weight * "
                                    "predicted_rating' when both stages ran")
    stages: str = Field(description="'retrieval+rerank', 'retrieval', 'inner_product' (an index of "
                                    "a model without retrieval towers) or 'inner_product+rerank'")
    candidates: int = Field(description="movies stage one returned (max(candidates, k); k when "
                                        "there is no stage two)")
    rerank_weight: float
    exclude_seen: bool
    seen_count: int
    query: UserInfo
    ids: list[int]
    scores: list[float]
    retrieval_scores: list[float | None]
    predicted_ratings: list[float | None]
    results: list[RecommendedMovie]
