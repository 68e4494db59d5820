"""Compiles the MovieLens TFX pipeline for Kubeflow Pipelines v2 (and Vertex AI Pipelines).

    python -m kubeflow.runner --image REGISTRY/movielens-tfx:TAG \\
        --pipeline-root gs://BUCKET/movielens/pipeline-root

The pipeline is the one every runner uses: the components come from
`pipeline.pipeline.create_components`, and TFX's `KubeflowV2DagRunner` compiles them into
the KFP v2 intermediate representation. Nothing runs here and nothing is contacted:
compiling is offline. Two files are written:

  <output>.json  a PipelineJob (TFX's format): what Vertex AI Pipelines takes
                 (`aiplatform.PipelineJob(template_path=...)`).
  <output>.yaml  the PipelineSpec, plus a kfp-kubernetes PlatformSpec document that mounts
                 the PVCs named with --pvc into every step: what the KFP SDK
                 (`kfp.Client().create_run_from_pipeline_package`) and the KFP UI take.

No metadata connection is configured: on a cluster the orchestrator's own ML-Metadata is
used. The components read and write every path through TensorFlow's filesystem layer
(common.fileio, tf.io.gfile), so --data, --ratings, --serving-dir and --work-dir may be
Cloud Storage URIs (gs://BUCKET/..., what Vertex AI Pipelines with Dataflow wants; the image
has TensorFlow's GCS filesystem) or absolute paths inside the step's container: mounted PVCs
on Kubeflow (--pvc; by default the PVCs of kubeflow/manifests that hold one of those paths).
The pipeline root is a URI (gs://) or a PVC path; see kubeflow/README.md.

--target kfp (the default) builds the pipeline without the latest-blessed-model resolver
(PipelineConfig.baseline=False): the open-source KFP
backend does not implement resolver executors ("resolver executors not implemented"), so a
spec with one cannot run there. The Evaluator then has no baseline and TFX rubber-stamps
the change threshold: blessing depends on the absolute RMSE threshold only. --target vertex
keeps the spec exactly as TFX compiles it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from pipeline import configs
from settings.paths import ArtifactPaths

# Where kubeflow/Dockerfile puts the project's source tree inside the image.
IMAGE_PROJECT_DIR = PurePosixPath("/opt/movielens")
IMAGE_SCHEMA_PATH = IMAGE_PROJECT_DIR / configs.SCHEMA_PATH.relative_to(configs.SCHEMA_PATH.parents[2])

DEFAULT_OUTPUT = Path("artifacts") / "kubeflow" / "movielens_pipeline.json"
DEFAULT_DATA = "/data/ml-1m"
DEFAULT_SERVING_DIR = "/models"
DEFAULT_WORK_DIR = "/models/.work"
# The PVCs of kubeflow/manifests and where the steps see them (--target kfp).
DEFAULT_PVCS = ("movielens-data:/data", "movielens-models:/models")
TARGETS = ("kfp", "vertex")
#: URI schemes a step can read and write: gs:// is in the image (TensorFlow's GCS filesystem);
#: s3:// needs tensorflow-io's S3 filesystem added to it.
URI_SCHEMES = ("gs://", "s3://")


class UsageError(Exception):
    """A bad flag value: printed without a traceback."""


def _step_path(flag: str, value: str) -> str:
    """A path every step can open: a gs:// (or s3://) URI, or an absolute container path (a PVC).

    A relative path would resolve against each pod's working directory, and other schemes
    have no filesystem in the image: both are refused here rather than failing in a pod."""
    if value.startswith(URI_SCHEMES) and len(value.split("://", 1)[1].strip("/")) > 0:
        return value.rstrip("/")
    if value.startswith("/") and "://" not in value:
        return value
    raise UsageError(f"{flag} {value!r}: expected a Cloud Storage URI (gs://BUCKET/PATH) or an absolute path "
                     f"inside the step's container (a mounted volume), e.g. {DEFAULT_SERVING_DIR}")


def _is_uri(value: str) -> bool:
    return "://" in value


def default_pvcs(step_paths: Sequence[str]) -> list[tuple[str, str]]:
    """The manifests' PVCs that hold one of the steps' container paths (none when all are URIs)."""
    def under(path: str, mount: str) -> bool:
        return path == mount or path.startswith(mount.rstrip("/") + "/")

    pvcs = [_pvc(value) for value in DEFAULT_PVCS]
    return [(name, mount) for name, mount in pvcs
            if any(not _is_uri(path) and under(path, mount) for path in step_paths)]


def _pvc(value: str) -> tuple[str, str]:
    name, sep, mount = value.partition(":")
    if not sep or not name or not mount.startswith("/"):
        raise UsageError(f"--pvc {value!r}: expected CLAIM_NAME:/mount/path")
    return name, mount


def beam_args(extra: Sequence[str]) -> list[str]:
    """The local DirectRunner defaults unless --beam-arg names a runner; extras passed through."""
    if any(arg.startswith("--runner") for arg in extra):
        return list(extra)
    return list(configs.DEFAULT_BEAM_ARGS) + list(extra)


def build_config(args: argparse.Namespace) -> configs.PipelineConfig:
    from settings.hparams import HParams

    # Paths as a step sees them: URIs (gs://) or POSIX paths inside its container (mounted volumes).
    paths = ArtifactPaths(_step_path("--work-dir", args.work_dir),
                          pipeline_root_override=args.pipeline_root,
                          serving_dir_override=_step_path("--serving-dir", args.serving_dir))
    workers = _trainer_workers(args)
    vertex = None
    if getattr(args, "vertex_project", None):
        from components.vertex_trainer import training_config

        vertex = training_config(project=args.vertex_project, region=args.vertex_region, image=args.image,
                                 workers=workers, machine_type=args.trainer_machine_type)
    return configs.PipelineConfig(
        trainer_workers=1 if vertex else workers, vertex_training=vertex,
        data_dir=_step_path("--data", args.data), paths=paths,
        ratings_csv=_step_path("--ratings", args.ratings) if args.ratings else None,
        skip_bad_rows=args.skip_bad_rows, beam_args=beam_args(args.beam_arg),
        enable_cache=not args.no_cache, stop_after=args.stop_after,
        hparams=HParams.parse(args.hparam), rmse_threshold=args.rmse_threshold,
        baseline=args.target != "kfp", schema_path=args.schema_file)


def _trainer_workers(args: argparse.Namespace) -> int:
    """--trainer-workers, checked against the target: Vertex AI training jobs need --target vertex."""
    workers = getattr(args, "trainer_workers", 1)
    if workers < 1:
        raise UsageError(f"--trainer-workers {workers}: expected at least 1")
    if getattr(args, "vertex_project", None) and args.target != "vertex":
        raise UsageError("--vertex-project runs the Trainer as a Vertex AI training job: it needs --target vertex")
    return workers


def build_pipeline(config: configs.PipelineConfig):
    """The shared pipeline with no metadata config: on the cluster, KFP's own MLMD is used."""
    from pipeline.pipeline import create_pipeline

    return create_pipeline(config, metadata_connection_config=None)


def compile_pipeline_job(pipeline, image: str, display_name: str | None = None) -> dict[str, Any]:
    """TFX's KubeflowV2DagRunner: the pipeline as a PipelineJob dict (pipeline spec schema 2.1)."""
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    config = kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
        display_name=display_name, default_image=image, use_pipeline_spec_2_1=True)
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(config=config)
    return runner.run(pipeline, write_out=False)


def pvc_platform_spec(pipeline_spec: dict[str, Any], pvcs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A kfp-kubernetes PlatformSpec mounting every PVC into every container executor.

    The same document `kfp.kubernetes.mount_pvc` produces (KubernetesExecutorConfig.pvcMount):
    pvcNameParameter for current backends, the deprecated `constant` for older ones.
    """
    executors = {}
    for label, executor in pipeline_spec["deploymentSpec"]["executors"].items():
        if "container" in executor:
            executors[label] = {"pvcMount": [
                {"constant": name, "pvcNameParameter": {"runtimeValue": {"constant": name}},
                 "mountPath": mount} for name, mount in pvcs]}
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}


def write_outputs(job: dict[str, Any], platform_spec: dict[str, Any] | None, output: Path) -> tuple[Path, Path]:
    """<output>.json (PipelineJob) and <output>.yaml (PipelineSpec [+ PlatformSpec])."""
    import yaml

    output.parent.mkdir(parents=True, exist_ok=True)
    json_path, yaml_path = output.with_suffix(".json"), output.with_suffix(".yaml")
    json_path.write_text(json.dumps(job, indent=2, sort_keys=True) + "\n")
    documents = [job["pipelineSpec"]] + ([platform_spec] if platform_spec else [])
    with yaml_path.open("w") as handle:
        handle.write(f"# PIPELINE DEFINITION\n# Name: {job['pipelineSpec']['pipelineInfo']['name']}\n"
                     "# Compiled by kubeflow/runner.py from pipeline.pipeline.create_components.\n")
        yaml.safe_dump_all(documents, handle, sort_keys=True)
    return json_path, yaml_path


def _check(job: dict[str, Any], platform_spec: dict[str, Any] | None) -> None:
    """Parses the result back into the KFP protos, so a malformed spec fails here, not on upload."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    json_format.ParseDict(job, pipeline_spec_pb2.PipelineJob())
    json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    if platform_spec:
        json_format.ParseDict(platform_spec, pipeline_spec_pb2.PlatformSpec())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kubeflow.runner",
        description="Compile the MovieLens TFX pipeline (pipeline.pipeline.create_components) with "
                    "TFX's KubeflowV2DagRunner into a KFP v2 pipeline spec. Offline: nothing is "
                    "submitted. See kubeflow/README.md.",
        epilog="Paths (--data, --ratings, --serving-dir, --work-dir) are gs:// URIs or absolute paths "
               "inside the step containers (mounted PVCs on Kubeflow, --pvc). Vertex AI with Dataflow: "
               "python -m kubeflow.runner --target vertex --image europe-docker.pkg.dev/PROJECT/ml/movielens-tfx:0.1.0 "
               "--pipeline-root gs://BUCKET/movielens/pipeline-root --data gs://BUCKET/data/ml-1m "
               "--serving-dir gs://BUCKET/movielens/serving --work-dir gs://BUCKET/movielens/work "
               "--beam-arg=--runner=DataflowRunner "
               "--beam-arg=--project=PROJECT --beam-arg=--region=europe-west1 "
               "--beam-arg=--temp_location=gs://BUCKET/tmp "
               "--beam-arg=--sdk_container_image=europe-docker.pkg.dev/PROJECT/ml/movielens-tfx-beam:0.1.0")
    parser.add_argument("--image", required=True,
                        help="pipeline image every step runs in (built from kubeflow/Dockerfile), e.g. REGISTRY/movielens-tfx:0.1.0")
    parser.add_argument("--pipeline-root", required=True,
                        help="where TFX writes artifacts: gs://BUCKET/PATH (works in the image), s3://BUCKET/PATH "
                             "(needs an S3 filesystem for TensorFlow in the image) or a PVC path")
    parser.add_argument("--data", default=DEFAULT_DATA,
                        help="folder of MovieLens files as the steps see it: gs://BUCKET/PATH or a container path "
                             "(default: %(default)s, on the data PVC)")
    parser.add_argument("--ratings", metavar="CSV", help="a user,movie,rating[,timestamp] CSV used instead of the folder's "
                                                         "ratings file (gs:// URI or container path)")
    parser.add_argument("--serving-dir", default=DEFAULT_SERVING_DIR,
                        help="the Pusher writes <serving-dir>/movielens/<version>/ (staged, then renamed): gs://BUCKET/PATH "
                             "(TF-Serving reads gs:// model base paths) or a mounted volume such as the models PVC "
                             "(default: %(default)s)")
    parser.add_argument("--work-dir", default=DEFAULT_WORK_DIR,
                        help="Trainer checkpoints (resume after a pod restart) and quarantined rows: gs:// URI or "
                             "container path (default: %(default)s)")
    parser.add_argument("--beam-arg", action="append", default=[], metavar="ARG",
                        help="a Beam pipeline option passed through to every Beam-based step, e.g. "
                             "--beam-arg=--runner=DataflowRunner, --beam-arg=--runner=FlinkRunner, "
                             "--beam-arg=--runner=SparkRunner (repeatable). Without --runner: the DirectRunner "
                             f"in the step's pod ({' '.join(configs.DEFAULT_BEAM_ARGS)})")
    parser.add_argument("--target", choices=TARGETS, default="kfp",
                        help="kfp: open-source Kubeflow Pipelines (no resolver executors there, so the "
                             "latest-blessed-model resolver is left out; PVCs mounted); vertex: Vertex AI "
                             "Pipelines, the spec exactly as TFX compiles it (default: %(default)s)")
    parser.add_argument("--pvc", action="append", default=None, metavar="CLAIM:/MOUNT",
                        help="a PersistentVolumeClaim mounted into every step (kfp target; repeatable). "
                             f"Default: those of {' '.join(DEFAULT_PVCS)} (kubeflow/manifests) holding --data, --ratings, "
                             "--serving-dir or --work-dir; none when all of them are gs:// URIs")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="the PipelineJob JSON; the PipelineSpec YAML goes next to it (default: %(default)s)")
    parser.add_argument("--display-name", help="run display name (default: the pipeline name)")
    parser.add_argument("--schema-file", default=str(IMAGE_SCHEMA_PATH),
                        help="the schema ImportSchemaGen reads, as a path in the image (default: %(default)s)")
    parser.add_argument("--skip-bad-rows", action="store_true", help="quarantine malformed rows instead of failing")
    parser.add_argument("--no-cache", action="store_true", help="disable step caching")
    parser.add_argument("--stop-after", default="pusher", metavar="COMPONENT",
                        help="last stage to include (as for `movielens-tfx run`; default: %(default)s)")
    parser.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE",
                        help="a Trainer hyperparameter (settings/hparams.py HParams), repeatable")
    parser.add_argument("--rmse-threshold", type=float, default=configs.DEFAULT_RMSE_THRESHOLD,
                        help="bless a model only if its test RMSE is below this (default: %(default)s)")
    workers = parser.add_argument_group(
        "training across workers (MultiWorkerMirroredStrategy; see kubeflow/README.md)")
    workers.add_argument("--trainer-workers", type=int, default=1, metavar="N",
                         help="train with N workers: with --vertex-project, a Vertex AI CustomJob of 1 chief and "
                              "N-1 workers (TFX's Vertex training extension); otherwise N worker processes in the "
                              "Trainer's pod (give it the CPUs, see kubeflow/README.md) (default: %(default)s)")
    workers.add_argument("--vertex-project", metavar="PROJECT",
                         help="run the Trainer as a Vertex AI training job in this Google Cloud project "
                              "(--target vertex)")
    workers.add_argument("--vertex-region", default="europe-west1",
                         help="region of that training job (default: %(default)s)")
    workers.add_argument("--trainer-machine-type", default="n1-standard-8",
                         help="machine type of each Vertex AI training replica (default: %(default)s)")
    return parser


def compile_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Compiles and writes; returns what was written (paths, removed resolver tasks, PVCs)."""
    config = build_config(args)
    step_paths = [config.data_dir, config.ratings_csv or "", config.paths.serving_dir, config.paths.root]
    pvcs = ([_pvc(value) for value in args.pvc] if args.pvc is not None
            else default_pvcs([p for p in step_paths if p]))
    job = compile_pipeline_job(build_pipeline(config), args.image, args.display_name)
    removed = [] if config.baseline else ["latest_blessed_model_resolver"]
    platform_spec = None
    if args.target == "kfp":
        platform_spec = pvc_platform_spec(job["pipelineSpec"], pvcs) if pvcs else None
    _check(job, platform_spec)
    json_path, yaml_path = write_outputs(job, platform_spec, args.output)
    return {"json": json_path, "yaml": yaml_path, "removed": removed,
            "pvcs": pvcs if platform_spec else [], "tasks": sorted(job["pipelineSpec"]["root"]["dag"]["tasks"])}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from common.errors import UserError

    try:
        result = compile_from_args(args)
    except (UsageError, UserError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.pipeline_root.startswith("s3://"):
        print("[kubeflow] note: s3:// pipeline roots need an S3 filesystem for TensorFlow in the image "
              "(tensorflow-io); the image has gs:// and local paths", file=sys.stderr)
    elif "://" not in args.pipeline_root:
        print("[kubeflow] note: a path as pipeline root must be a PVC mounted into every step (--pvc); "
              "KFP's launcher itself only accepts gs://, s3:// and minio:// roots", file=sys.stderr)
    if args.target == "vertex":
        local = [f"{flag} {value}" for flag, value in (("--data", args.data), ("--ratings", args.ratings),
                                                       ("--serving-dir", args.serving_dir), ("--work-dir", args.work_dir))
                 if value and not _is_uri(value) and not value.startswith("/gcs/")]
        if local:
            print(f"[kubeflow] note: Vertex AI mounts no PVCs: {', '.join(local)} must exist in the step's container; "
                  "use gs://BUCKET/... URIs (or the /gcs/BUCKET FUSE mount)", file=sys.stderr)
    print(f"[kubeflow] {len(result['tasks'])} steps, image {args.image}, target {args.target}", file=sys.stderr)
    if result["removed"]:
        print(f"[kubeflow] left out for open-source KFP (no resolver executors): {', '.join(result['removed'])}",
              file=sys.stderr)
    for name, mount in result["pvcs"]:
        print(f"[kubeflow] PVC {name} mounted at {mount} in every step", file=sys.stderr)
    print(f"[kubeflow] wrote {result['json']} (PipelineJob: Vertex AI) and {result['yaml']} "
          f"(PipelineSpec: KFP SDK/UI)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
