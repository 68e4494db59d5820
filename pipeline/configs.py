"""Pipeline configuration: what one run of the TFX pipeline needs, and its defaults.

Names and paths shared with the other packages (ArtifactPaths, MODEL_NAME, ...) live on the
ground floor, in `settings.paths`; this module holds what only the pipeline uses.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from common.uris import join
from settings.paths import ArtifactPaths

SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "schema.pbtxt"

PREPROCESSING_FN = "model.preprocessing.preprocessing_fn"
RUN_FN = "model.trainer.run_fn"

STAGES = ("example_gen", "statistics_gen", "schema_gen", "example_validator", "transform",
          "trainer", "evaluator", "pusher")

# StatisticsGen: TFDV's sketch-based top-k and unique counts (Misra-Gries and KMV sketches, a
# fixed size per feature) instead of its exact ones, which group every distinct value of every
# string feature across the whole data set, a cost per rating that grows with the catalogue
# (users, titles and zips; benchmarks/results/pipeline_growth.json). The curated schema's checks
# read the same fields: a value outside a feature's domain still shows (tests/test_data_gate.py).
def stats_options():
    """StatisticsGen's tfdv.StatsOptions (TFDV imported here: the CLI reads this module without it)."""
    import tensorflow_data_validation as tfdv

    return tfdv.StatsOptions(experimental_use_sketch_based_topk_uniques=True)


# Blessing: the candidate's test RMSE must be under this and no worse than the last blessed.
DEFAULT_RMSE_THRESHOLD = 1.0

# Beam on the local machine: the DirectRunner, in-process. Pass --beam-arg to change it.
# Without a dependency flag, every Beam component of TFX first builds an sdist of TFX itself
# for remote workers (dependency_utils.make_beam_dependency_flags: 3-8 s each, ExampleGen,
# StatisticsGen and Transform, measured from TFX's own log lines); the DirectRunner's workers
# share this environment and never stage packages, so the flag below says so (the
# DirectRunner ignores its value). A remote runner needs its own image or --setup_file
# anyway: pass it with --beam-arg, the later flag wins.
DIRECT_RUNNER_NO_STAGING = "--sdk_container_image=none"
# Mode: multi_threading, one process for every component. The three DirectRunner modes on
# ML-1M's data half, per component: benchmarks/results/beam_modes.json (`python -m benchmarks.beam_modes`).
DEFAULT_BEAM_ARGS: tuple[str, ...] = ("--direct_running_mode=multi_threading", "--direct_num_workers=2",
                                      DIRECT_RUNNER_NO_STAGING)


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
    # Trainer hyperparameters (settings.hparams.HParams field -> value); defaults otherwise.
    hparams: dict = field(default_factory=dict)
    rmse_threshold: float = DEFAULT_RMSE_THRESHOLD
    # Compare with the latest blessed model (a Resolver). Open-source KFP has no resolver
    # executor, so its compiled spec turns this off and blesses on the threshold alone.
    baseline: bool = True
    # The curated schema as the executing machine sees it (a container path on Kubeflow).
    schema_path: str = str(SCHEMA_PATH)
    # Trainer processes: > 1 trains with MultiWorkerMirroredStrategy across that many local
    # worker processes (model.distribute), unless vertex_training sends it to Vertex AI.
    trainer_workers: int = 1
    # With trainer_workers > 1: pin each local worker to this many cores (a benchmark's
    # N workers x c cores against one process on N*c); None lets them share the machine.
    trainer_cpus_per_worker: int | None = None
    # Trainer custom_config entries that submit it to Vertex AI with its worker pools
    # (components.vertex_trainer.training_config); None trains where the step runs.
    vertex_training: dict | None = None

    def __post_init__(self) -> None:
        if self.stop_after not in STAGES:
            raise ValueError(f"stop_after must be one of {STAGES}, got {self.stop_after!r}")
        if not isinstance(self.trainer_workers, int) or self.trainer_workers < 1:
            raise ValueError(f"trainer_workers must be an int >= 1, got {self.trainer_workers!r}")

    @property
    def model_base_path(self) -> str:
        """Where the Pusher writes versions: <serving_dir>/<model name>/<version>/."""
        return self.paths.model_base_path

    @property
    def quarantine_path(self) -> str:
        return join(self.paths.quarantine_dir, f"{posixpath.basename(str(self.data_dir).rstrip('/'))}.tsv")
