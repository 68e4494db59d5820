"""Poster similarity: a CNN embeds movie posters into a cosine FAISS index of the index version.

Why: besides what people watch together, movies are similar in how they *look*. Posters
are images named ``<movie_id>.jpg|jpeg|png`` in one folder; a Keras Applications CNN
(VGG16 by default) without its classifier, global-average pooled, turns each into a vector;
the vectors are L2-normalised and put in an exact inner-product index (cosine), served by
``GET /movies/{id}/similar?by=posters``.

Nothing is downloaded: ``--weights`` is either a local weights file (e.g. Keras'
``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`` that the user fetched) or ``none``
for random weights (structure only; useful for tests and timing, not for quality).

Two ways in: ``export-index --posters DIR`` builds the poster index with the version (before
its gate), and this module's CLI adds one to an already published version: the new files
are written first, then the manifest is replaced atomically and LATEST is re-written so
running services reload; a reader sees the version with or without posters, never half.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from common import fileio
from common.logs import quiet_libraries
from common.uris import is_uri
from index import ann, layout

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: --model -> (keras.applications constructor, preprocessing module)
CNNS: dict[str, tuple[str, str]] = {
    "vgg16": ("VGG16", "vgg16"),
    "resnet50": ("ResNet50", "resnet50"),
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2"),
}


def find_posters(folder: Path) -> tuple[dict[int, Path], list[str]]:
    """movie id -> image path for ``<id>.<jpg|jpeg|png>``; and the names that were ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"poster folder not found: {folder}")
    found: dict[int, Path] = {}
    ignored: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.stem.isdigit():
            found[int(path.stem)] = path
        elif path.is_file():
            ignored.append(path.name)
    return found, ignored


def load_cnn(model: str = "vgg16", weights: str | None = None, image_size: int = 224,
             seed: int = 0) -> tuple[Any, Callable[[np.ndarray], np.ndarray]]:
    """(feature extractor [b, s, s, 3] -> [b, F], its preprocess_input). Never downloads."""
    if model not in CNNS:
        raise ValueError(f"unknown poster model {model!r}; choose from {sorted(CNNS)}")
    if weights is not None:
        if weights.lower() == "imagenet":
            raise ValueError("weights='imagenet' would download; pass a local weights file path "
                             "or 'none'")
        if not Path(weights).is_file():
            raise FileNotFoundError(f"poster CNN weights file not found: {weights}")
    quiet_libraries()
    import importlib

    import keras

    keras.utils.set_random_seed(seed)  # random weights are reproducible
    constructor_name, module_name = CNNS[model]
    constructor = getattr(keras.applications, constructor_name)
    cnn = constructor(include_top=False, weights=weights, input_shape=(image_size, image_size, 3),
                      pooling="avg")
    preprocess = importlib.import_module(f"keras.applications.{module_name}").preprocess_input
    return cnn, preprocess


def load_image(path: Path, image_size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
        return np.asarray(image, dtype=np.float32)


def embed_posters(posters: dict[int, Path], model: str = "vgg16", weights: str | None = None,
                  image_size: int = 224, batch_size: int = 32, progress: bool = True,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(movie ids, L2-normalised features, unreadable files) for every poster."""
    from tqdm.auto import tqdm

    cnn, preprocess = load_cnn(model, weights, image_size, seed)
    ids: list[int] = []
    chunks: list[np.ndarray] = []
    bad: list[str] = []
    items = sorted(posters.items())
    with tqdm(total=len(items), desc="poster embeddings", unit="img",
              disable=None if progress else True,
              leave=False) as bar:
        for start in range(0, len(items), batch_size):
            images, batch_ids = [], []
            for movie_id, path in items[start:start + batch_size]:
                try:
                    images.append(load_image(path, image_size))
                    batch_ids.append(movie_id)
                except (OSError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
                    bad.append(f"{path.name}: {error}")
            if images:
                batch = preprocess(np.stack(images))
                chunks.append(np.asarray(cnn.predict(batch, verbose=0), np.float32))
                ids += batch_ids
            bar.update(len(items[start:start + batch_size]))
    if not ids:
        raise ValueError("no readable poster images")
    return np.asarray(ids, np.int64), ann.l2_normalise(np.concatenate(chunks)), bad


def write_poster_files(folder: Path, ids: np.ndarray, vectors: np.ndarray,
                       info: dict[str, Any]) -> dict[str, Any]:
    """Write the poster index files into ``folder``; return the manifest entries to merge.

    Each file is written under a temp name and renamed, so a published folder never holds
    a partial poster file.
    """
    import faiss

    built = ann.build_index(vectors, ann.AnnConfig(index_type="flat"))

    def put(name: str, write: Callable[[Path], None]) -> None:
        tmp = folder / f".{name}.tmp"
        write(tmp)
        os.replace(tmp, folder / name)

    put(layout.POSTER_IDS, lambda p: _save_npy(p, ids))
    put(layout.POSTER_VECTORS, lambda p: _save_npy(p, vectors))
    put(layout.POSTERS_INDEX, lambda p: faiss.write_index(built.index, str(p)))
    entry = {"file": layout.POSTERS_INDEX, "metric": "inner_product", "normalised": True,
             "ntotal": int(built.index.ntotal), "params": built.params,
             "recall_at_10": built.recall_at_10, "build_seconds": round(built.build_seconds, 4),
             "tuning": []}
    return {"indexes": {layout.POSTERS: entry}, "counts": {"posters": int(len(ids))},
            "posters": info}


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # np.save(path) would append ".npy" to the temp name
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


def poster_writer(posters_dir: Path, model: str = "vgg16", weights: str | None = None,
                  image_size: int = 224, batch_size: int = 32, progress: bool = True,
                  seed: int = 0, log: Callable[[str], None] = print
                  ) -> Callable[[Path], dict[str, Any]]:
    """An ``ExtraWriter`` for ``builder.build_index_version``: embeds posters into the build."""

    def write(folder: Path) -> dict[str, Any]:
        known = set(np.load(folder / layout.MOVIE_IDS, allow_pickle=False).tolist())
        return _embed_and_write(folder, known, posters_dir, model, weights, image_size,
                                batch_size, progress, seed, log)

    return write


def _embed_and_write(folder: Path, known: set[int], posters_dir: Path, model: str,
                     weights: str | None, image_size: int, batch_size: int, progress: bool,
                     seed: int, log: Callable[[str], None]) -> dict[str, Any]:
    found, ignored = find_posters(posters_dir)
    unknown = sorted(set(found) - known)
    posters = {m: p for m, p in found.items() if m in known}
    if not posters:
        raise ValueError(f"{posters_dir}: no <movie_id>.jpg|jpeg|png image of a movie in the index "
                         f"({len(found)} images, {len(unknown)} of unknown movies)")
    ids, vectors, bad = embed_posters(posters, model, weights, image_size, batch_size, progress,
                                      seed)
    for message in ([f"ignored {len(ignored)} non-poster files"] if ignored else []) + \
            ([f"{len(unknown)} posters of movies not in the index"] if unknown else []) + \
            [f"unreadable: {b}" for b in bad]:
        log(f"posters: {message}")
    info = {"source": str(posters_dir), "model": model,
            "weights": "random" if weights is None else str(weights), "image_size": image_size,
            "dimension": int(vectors.shape[1]), "unknown_movies": len(unknown),
            "unreadable": bad}
    return write_poster_files(folder, ids, vectors, info)


def add_posters(index_dir: Path, version: str | None, posters_dir: Path, model: str = "vgg16",
                weights: str | None = None, image_size: int = 224, batch_size: int = 32,
                progress: bool = True, seed: int = 0,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Add (or replace) the poster index of a published version; returns the new manifest."""
    if is_uri(index_dir):  # it rewrites a published folder in place: local folders only
        raise ValueError(f"{index_dir}: `movielens-tfx posters` updates a local index folder; for a remote "
                         f"one, rebuild with `export-index --posters` (which uploads the result)")
    folder = layout.version_dir(Path(index_dir), version)
    manifest = layout.read_json(folder / layout.MANIFEST)
    layout.verify_checksums(folder, manifest)  # never re-bless a corrupted folder
    known = set(np.load(folder / layout.MOVIE_IDS, allow_pickle=False).tolist())
    added = _embed_and_write(folder, known, posters_dir, model, weights, image_size, batch_size,
                             progress, seed, log)
    manifest["indexes"].update(added.pop("indexes"))
    manifest["counts"].update(added.pop("counts"))
    manifest.update(added)
    for name in (layout.POSTERS_INDEX, layout.POSTER_IDS, layout.POSTER_VECTORS):
        path = folder / name
        manifest["files"][name] = {"sha256": fileio.sha256(path), "bytes": path.stat().st_size}
    layout.write_json_atomic(folder / layout.MANIFEST, manifest)
    if layout.read_latest(Path(index_dir)) == folder.name:
        layout.write_latest(Path(index_dir), folder.name)  # new inode: services reload
    return manifest


def add_cnn_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """--model/--weights/--image-size/--batch-size (``prefix`` e.g. 'poster-' for export)."""
    parser.add_argument(f"--{prefix}model", default="vgg16", choices=sorted(CNNS),
                        help="Keras Applications CNN (default: vgg16)")
    parser.add_argument(f"--{prefix}weights", default=None if prefix else argparse.SUPPRESS,
                        required=not prefix,
                        help="local weights file (include_top=False variant) or 'none' for random "
                             "weights; nothing is downloaded"
                             + (" (default: none)" if prefix else ""))
    parser.add_argument(f"--{prefix}image-size", type=int, default=224,
                        help="square input size in pixels (default: 224; >= 32)")
    parser.add_argument(f"--{prefix}batch-size", type=int, default=32)


def parse_weights(value: str | None) -> str | None:
    return None if value is None or value.lower() == "none" else value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--posters", required=True, type=Path, help="folder of poster images")
    parser.add_argument("--artifacts", type=Path, default=None,
                        help="artifacts root (default: $MOVIELENS_ARTIFACTS or ./artifacts)")
    parser.add_argument("--index-dir", type=Path, default=None,
                        help="index folder (default: <artifacts>/index)")
    parser.add_argument("--version", default=None, help="index version (default: LATEST)")
    add_cnn_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of random weights")
    parser.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="movielens-tfx posters",
        description="Embed movie posters (<movie_id>.jpg|png) with a CNN into the poster index "
                    "of a published index version.")
    add_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    index_dir = args.index_dir or layout.default_index_dir(args.artifacts)
    try:
        manifest = add_posters(index_dir, args.version, args.posters, args.model,
                               parse_weights(args.weights), args.image_size, args.batch_size,
                               not args.no_progress, args.seed)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"poster index: {manifest['counts']['posters']} posters, "
          f"D={manifest['posters']['dimension']}, model {manifest['posters']['model']} "
          f"({manifest['posters']['weights']} weights) in {index_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
