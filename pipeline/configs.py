"""Pipeline configuration: names, paths and defaults in one place.

Every path the project writes lives under one artifacts folder (``artifacts/`` by default,
``--artifacts`` or $MOVIELENS_ARTIFACTS to move it), so one ``rm -rf`` resets a machine
and one volume holds everything on a cluster.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PIPELINE_NAME = "movielens"
MODEL_NAME = "movielens"
DEFAULT_ARTIFACTS = Path(os.environ.get("MOVIELENS_ARTIFACTS", "artifacts"))
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "schema.pbtxt"

PREPROCESSING_FN = "components.preprocessing.preprocessing_fn"
RUN_FN = "components.trainer.run_fn"

# Blessing: the candidate's test RMSE must be under this and no worse than the last blessed.
DEFAULT_RMSE_THRESHOLD = 1.0

# Beam on the local machine: the DirectRunner, in-process. Pass --beam-arg to change it.
DEFAULT_BEAM_ARGS: tuple[str, ...] = ("--direct_running_mode=in_memory", "--direct_num_workers=1")

# Synthetic data used when no real dataset is named (offline default of `make demo`).
DEFAULT_SYNTHETIC_SIZE = "demo"
DEFAULT_SEED = 42


@dataclass
class ArtifactPaths:
    """Where each kind of output goes, below one root."""

    root: Path = DEFAULT_ARTIFACTS
    pipeline_root_override: Path | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()

    @property
    def pipeline_root(self) -> Path:
        if self.pipeline_root_override is not None:
            return Path(self.pipeline_root_override).resolve()
        return self.root / "pipelines" / PIPELINE_NAME

    @property
    def metadata_path(self) -> Path:
        return self.root / "metadata" / f"{PIPELINE_NAME}.sqlite"

    @property
    def serving_dir(self) -> Path:
        """TF-Serving model base paths live below: <serving_dir>/<model>/<version>/."""
        return self.root / "serving"

    @property
    def index_dir(self) -> Path:
        return self.root / "index"

    @property
    def data_dir(self) -> Path:
        """Generated and downloaded datasets."""
        return self.root / "data"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def checkpoint_dir(self) -> Path:
        """Trainer checkpoints that outlive one execution, so a re-run resumes."""
        return self.root / "checkpoints"


@dataclass
class PipelineConfig:
    """What one pipeline run needs; `create_pipeline` turns it into TFX components."""

    data_dir: str
    paths: ArtifactPaths = field(default_factory=ArtifactPaths)
    ratings_csv: str | None = None
    skip_bad_rows: bool = False
    beam_args: list[str] = field(default_factory=lambda: list(DEFAULT_BEAM_ARGS))
    enable_cache: bool = True
    # The last component to include: "transform" runs the data half only.
    stop_after: str = "pusher"
    # Trainer hyperparameters (components.model.HParams field -> value); defaults otherwise.
    hparams: dict = field(default_factory=dict)
    rmse_threshold: float = DEFAULT_RMSE_THRESHOLD
    # Compare with the latest blessed model (a Resolver). Open-source KFP has no resolver
    # executor, so its compiled spec turns this off and blesses on the threshold alone.
    baseline: bool = True
    # The curated schema as the executing machine sees it (a container path on Kubeflow).
    schema_path: str = str(SCHEMA_PATH)

    @property
    def model_base_path(self) -> Path:
        """Where Pusher writes versions: <serving_dir>/<model name>/<version>/."""
        return self.paths.serving_dir / MODEL_NAME

    @property
    def quarantine_path(self) -> str:
        return str(self.paths.quarantine_dir / f"{Path(self.data_dir).name}.tsv")
