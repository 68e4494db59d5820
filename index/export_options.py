"""The export job's options: the `ExportOptions` dataclass and the flags that fill it.

Why a module of its own: ``index.export`` is the job (`export_index(options)`), callable from
code with an `ExportOptions` and no argparse; the ~80 lines of flags and their help, which
users read as ``movielens-tfx export-index --help``, live here beside the dataclass whose
fields they fill, so that a flag and its field (name, default) are changed together.
``ExportOptions.from_args`` turns a parsed Namespace into options; tests check that the
parser's defaults are the dataclass's.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from common import fileio
from common.flags import options_from_flags
from index import ann
from index.embed import RETRIEVAL_SPACE, SPACES

#: The space similar movies/users are searched in. benchmarks.ranking measures both spaces'
#: similar-movies lists against held-out likes (results/ranking_*.json, "similar_movies"): the
#: retrieval space's one-movie queries beat the rating towers' cosine (and EASE's item-item
#: weights) in co_like@10 and hit@10 on ML-100K and ML-1M.
DEFAULT_SIMILAR_SPACE = RETRIEVAL_SPACE

#: ExportOptions fields that name a file or folder (a local Path, or a URI kept as str)
_LOCATIONS = ("data", "ratings", "artifacts", "model_base_path", "index_dir", "output_manifest")


@dataclass
class ExportOptions:
    """What one export does; field = flag (``--model-base-path`` -> model_base_path), same
    defaults. Paths may be str, Path or URIs (gs://...); None means the flag's default:
    the model's catalogue for ``data``, ``<artifacts>/serving/movielens`` for
    ``model_base_path``, ``<artifacts>/index`` for ``index_dir``."""

    # inputs
    data: Path | str | None = None
    ratings: Path | str | None = None
    skip_bad_rows: bool = False
    artifacts: Path | str | None = None
    model_base_path: Path | str | None = None
    version: int | None = None
    batch_size: int = 1024
    # index
    index_dir: Path | str | None = None
    similar_space: str = DEFAULT_SIMILAR_SPACE
    index_type: str = "auto"
    index_factory: str | None = None
    hnsw_m: int = 32
    ef_construction: int | None = None
    ef_search: int | None = None
    nlist: int | None = None
    nprobe: int | None = None
    k_factor: int | None = None
    train_size: int | None = None
    overwrite: bool = False
    keep_rejected: bool = False
    output_manifest: Path | str | None = None
    # gate
    min_recall: float = 0.95
    max_latency_ms: float = 5.0
    recall_queries: int = 1000
    latency_queries: int = 300
    seed: int = 0
    # posters (optional)
    posters: Path | None = None
    poster_model: str = "vgg16"
    poster_weights: str | None = None
    poster_image_size: int = 224
    poster_batch_size: int = 32
    no_progress: bool = False

    def __post_init__(self) -> None:
        # as the flags' type=fileio.to_path: a Path for a local path, a URI stays a str
        for name in _LOCATIONS:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, fileio.to_path(value))
        if self.posters is not None:
            self.posters = Path(self.posters)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ExportOptions:
        """Options from flags parsed by a parser that `add_arguments` filled."""
        return options_from_flags(cls, args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The export job's flags, one per `ExportOptions` field, with the same defaults (also
    `movielens-tfx export-index`'s, commands.registry)."""
    src = parser.add_argument_group("inputs")
    src.add_argument("--data", type=fileio.to_path, default=None,
                     help="override: read users, movies and ratings from this MovieLens folder (ML-1M "
                          "or ML-100K layout, or a .zip of one) instead of the model's catalogue "
                          "(default: the catalogue in <model version>/assets.extra/catalogue)")
    src.add_argument("--ratings", type=fileio.to_path, default=None,
                     help="with --data: user,movie,rating[,timestamp] CSV used instead of the folder's "
                          "ratings (the 'seen' movies excluded from recommendations)")
    src.add_argument("--skip-bad-rows", action="store_true",
                     help="with --data: skip malformed records instead of failing")
    src.add_argument("--artifacts", type=fileio.to_path, default=None,
                     help="artifacts root (default: $MOVIELENS_ARTIFACTS or ./artifacts)")
    src.add_argument("--model-base-path", type=fileio.to_path, default=None,
                     help="folder of numbered SavedModel versions "
                          "(default: <artifacts>/serving/movielens)")
    src.add_argument("--version", type=int, default=None,
                     help="model version to index (default: the latest)")
    src.add_argument("--batch-size", type=int, default=1024, help="ids per embedding call")

    out = parser.add_argument_group("index")
    out.add_argument("--index-dir", type=fileio.to_path, default=None,
                     help="where versions and LATEST live (default: <artifacts>/index)")
    out.add_argument("--similar-space", choices=SPACES, default=DEFAULT_SIMILAR_SPACE,
                     help="embedding space of the similar-movies/users indexes: the rating towers' "
                          "or the retrieval towers' (default: %(default)s, the one that measured "
                          "better in benchmarks.ranking); recommendations always search the "
                          "retrieval space when the model has one")
    out.add_argument("--index-type", choices=ann.INDEX_TYPES, default="auto",
                     help="auto = pick by catalogue size (exact below "
                          f"{ann.FLAT_UP_TO:,} items, HNSW32 below {ann.HNSW_UP_TO:,}, then an IVF "
                          "with an HNSW coarse quantizer and compressed codes; FAISS's guidelines, "
                          "see the README's sizing guide); flat = exact; hnsw / ivf = approximate "
                          "(default: auto)")
    out.add_argument("--index-factory", default=None, metavar="STRING",
                     help="any faiss.index_factory string, e.g. 'HNSW32', 'IVF4096_HNSW32,SQ8', "
                          "'IVF16384_HNSW32,PQ16,Refine(SQ8)' (inner product); overrides "
                          "--index-type for every index of the version")
    out.add_argument("--hnsw-m", type=int, default=32, help="HNSW graph degree (default: 32)")
    out.add_argument("--ef-construction", type=int, default=None,
                     help="HNSW build depth (default: 200 for --index-type hnsw, faiss's 40 else)")
    out.add_argument("--ef-search", type=int, default=None,
                     help="HNSW search depth (default: smallest reaching --min-recall)")
    out.add_argument("--nlist", type=int, default=None,
                     help="--index-type ivf: inverted lists (default: ~sqrt(n))")
    out.add_argument("--nprobe", type=int, default=None,
                     help="IVF lists probed (default: smallest reaching --min-recall)")
    out.add_argument("--k-factor", type=int, default=None,
                     help="indexes with a Refine stage: k_factor * k candidates re-scored "
                          "(default: tuned with nprobe for the fastest search reaching --min-recall)")
    out.add_argument("--train-size", type=int, default=None,
                     help="vectors IVF/PQ/SQ training samples (default: 64 per inverted list, at "
                          f"least {ann.MIN_TRAIN:,})")
    out.add_argument("--overwrite", action="store_true",
                     help="replace an existing index of the same model version")
    out.add_argument("--keep-rejected", action="store_true",
                     help="keep a build that fails the gate under <index-dir>/rejected/")
    out.add_argument("--output-manifest", type=fileio.to_path, default=None,
                     help="also copy manifest.json here (e.g. a Kubeflow output artifact)")

    gate = parser.add_argument_group("gate")
    gate.add_argument("--min-recall", type=float, default=0.95,
                      help="minimum recall@10 vs exact search, every index (default: 0.95)")
    gate.add_argument("--max-latency-ms", type=float, default=5.0,
                      help="maximum in-process p50 query latency, k=10 (default: 5.0)")
    gate.add_argument("--recall-queries", type=int, default=1000,
                      help="sample queries: half tune the knobs to --min-recall plus a margin of "
                           "two standard errors (smaller with more queries), half measure the "
                           "recall the gate checks (default: 1000)")
    gate.add_argument("--latency-queries", type=int, default=300)
    gate.add_argument("--seed", type=int, default=0)

    posters = parser.add_argument_group("posters (optional)")
    posters.add_argument("--posters", type=Path, default=None,
                         help="folder of <movie_id>.jpg|png posters to index too")
    from index.posters import add_cnn_arguments

    add_cnn_arguments(posters, prefix="poster-")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
