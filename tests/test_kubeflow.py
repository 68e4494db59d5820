"""Kubeflow: the compiled KFP v2 pipeline spec, the Kubernetes manifests and their kustomization.

The spec is compiled (offline, into tmp) by `kubeflow.runner` from the shared pipeline
definition, once per target, and read back as KFP's protos parse it. The manifests are
validated against the Kubernetes OpenAPI schema of their kind with `kubernetes-validate`
(its bundled schemas, Kubernetes 1.30, strict: unknown fields are errors).

Rendering: `kubectl apply -k` runs kustomize. The test renders the kustomization with a
small emulation of exactly the kustomize features kustomization.yaml uses (resources that
are files, `namespace`, `labels` without selectors or templates, `images`) and refuses any
other field, so the emulation cannot silently fall behind the file. Where a real kustomize
is on PATH (`kustomize`, or `kubectl kustomize`, which embeds it) its output must equal the
emulation's; where none is (no registry package ships the Go binary, and CI machines may
not have kubectl) that comparison is skipped and the emulation alone is asserted on.
"""
from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from kubeflow import runner

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "kubeflow" / "manifests"
K8S_VERSION = "1.30.0"
NAMESPACE = "movielens"

IMAGE = "registry.example/ml/movielens-tfx:1.2.3"
PIPELINE_ROOT = "gs://movielens-test-bucket/pipeline-root"
DATA = "/data/ml-1m"
SERVING_DIR = "/models"
BEAM_ARGS = ["--runner=DataflowRunner", "--project=movielens-test", "--region=europe-west1",
             "--temp_location=gs://movielens-test-bucket/tmp"]
TFX_ENTRYPOINT = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]

EXAMPLE_GEN, SCHEMA_GEN, GATE = "MovieLensExampleGen", "ImportSchemaGen", "DataAnomaliesGate"
PUSHER = "MovieLensPusher"
MODEL_RESOLVER = "latest_blessed_model_resolver-model-resolver"
BLESSING_RESOLVER = "latest_blessed_model_resolver-model-blessing-resolver"
# task -> the tasks it directly depends on (open-source KFP target: no resolver).
KFP_DEPENDENCIES = {
    EXAMPLE_GEN: set(),
    SCHEMA_GEN: set(),
    "StatisticsGen": {EXAMPLE_GEN},
    "ExampleValidator": {"StatisticsGen", SCHEMA_GEN},
    GATE: {"ExampleValidator"},
    "Transform": {GATE, EXAMPLE_GEN, SCHEMA_GEN},
    "Trainer": {"Transform", SCHEMA_GEN, EXAMPLE_GEN},  # EXAMPLE_GEN: its catalogue
    "Evaluator": {EXAMPLE_GEN, "Trainer"},
    PUSHER: {"Evaluator", "Trainer"},
}
# The pipeline's main line: each one runs strictly after the one before.
CHAIN = [EXAMPLE_GEN, "StatisticsGen", "ExampleValidator", GATE, "Transform", "Trainer", "Evaluator", PUSHER]
BEAM_STEPS = [EXAMPLE_GEN, "StatisticsGen", "Transform", "Evaluator"]


# --------------------------------------------------------------------------- compiled spec

def _compile(out_dir: Path, target: str) -> dict:
    argv = ["--image", IMAGE, "--pipeline-root", PIPELINE_ROOT, "--data", DATA, "--serving-dir", SERVING_DIR,
            "--target", target, "--output", str(out_dir / "movielens_pipeline.json")]
    argv += [f"--beam-arg={arg}" for arg in BEAM_ARGS]
    assert runner.main(argv) == 0
    job = json.loads((out_dir / "movielens_pipeline.json").read_text())
    docs = list(yaml.safe_load_all((out_dir / "movielens_pipeline.yaml").read_text()))
    # Read back the way the KFP backend/SDK and Vertex AI do: as protos, unknown fields rejected.
    json_format.ParseDict(job, pipeline_spec_pb2.PipelineJob())
    json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
    for doc in docs[1:]:
        json_format.ParseDict(doc, pipeline_spec_pb2.PlatformSpec())
    return {"job": job, "spec": job["pipelineSpec"], "yaml_docs": docs}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("kubeflow")
    return {target: _compile(out / target, target) for target in runner.TARGETS}


def _tasks(spec: dict) -> dict:
    return spec["root"]["dag"]["tasks"]


def _executor(spec: dict, task: str) -> dict:
    component = spec["components"][_tasks(spec)[task]["componentRef"]["name"]]
    return spec["deploymentSpec"]["executors"][component["executorLabel"]]


def _param(spec: dict, task: str, name: str):
    return _tasks(spec)[task]["inputs"]["parameters"][name]["runtimeValue"]["constant"]


def _upstream(spec: dict, task: str) -> set[str]:
    """Every task `task` transitively depends on."""
    seen: set[str] = set()
    todo = list(_tasks(spec)[task].get("dependentTasks", []))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_tasks(spec)[name].get("dependentTasks", []))
    return seen


def test_kfp_spec_has_the_pipeline_components_and_their_dependencies(compiled):
    spec = compiled["kfp"]["spec"]
    tasks = _tasks(spec)
    assert {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()} == KFP_DEPENDENCIES
    for earlier, later in zip(CHAIN, CHAIN[1:]):
        assert earlier in _upstream(spec, later), f"{later} does not run after {earlier}"
    assert spec["pipelineInfo"]["name"] == "movielens"
    assert spec["schemaVersion"] == "2.1.0"
    assert all(task["cachingOptions"].get("enableCache") for task in tasks.values())

    def source(task: str, key: str) -> tuple[str, str]:
        ref = tasks[task]["inputs"]["artifacts"][key]["taskOutputArtifact"]
        return ref["producerTask"], ref["outputArtifactKey"]

    assert source("Transform", "examples") == (EXAMPLE_GEN, "examples")
    assert source("Trainer", "examples") == ("Transform", "transformed_examples")
    assert source("Trainer", "transform_graph") == ("Transform", "transform_graph")
    assert source("Trainer", "catalogue") == (EXAMPLE_GEN, "catalogue")
    assert source("Evaluator", "model") == ("Trainer", "model")
    assert source(PUSHER, "model_blessing") == ("Evaluator", "blessing")
    assert source(PUSHER, "model") == ("Trainer", "model")


def test_kfp_target_leaves_out_the_resolver_open_source_kfp_cannot_run(compiled):
    spec = compiled["kfp"]["spec"]
    executors = spec["deploymentSpec"]["executors"]
    assert not any("resolver" in executor for executor in executors.values())
    evaluator = _tasks(spec)["Evaluator"]
    assert "baseline_model" not in evaluator["inputs"]["artifacts"]
    assert "baseline_model" not in spec["components"]["Evaluator"]["inputDefinitions"]["artifacts"]
    args = _executor(spec, "Evaluator")["container"]["args"]
    inputs_spec = json.loads(args[args.index("--json_serialized_inputs_spec_args") + 1])
    assert set(inputs_spec["artifacts"]) == {"examples", "model"}


def test_vertex_target_is_the_spec_as_tfx_compiles_it_with_the_resolver(compiled):
    spec = compiled["vertex"]["spec"]
    tasks = _tasks(spec)
    assert set(tasks) == set(KFP_DEPENDENCIES) | {MODEL_RESOLVER, BLESSING_RESOLVER}
    # LatestBlessedModelStrategy: blessing resolver -> model resolver -> Evaluator's baseline.
    assert set(tasks["Evaluator"]["dependentTasks"]) == KFP_DEPENDENCIES["Evaluator"] | {MODEL_RESOLVER}
    assert tasks["Evaluator"]["inputs"]["artifacts"]["baseline_model"]["taskOutputArtifact"] == {
        "producerTask": MODEL_RESOLVER, "outputArtifactKey": "model"}
    assert tasks[MODEL_RESOLVER]["inputs"]["artifacts"]["input"]["taskOutputArtifact"]["producerTask"] == BLESSING_RESOLVER
    for name in (MODEL_RESOLVER, BLESSING_RESOLVER):
        queries = _executor(spec, name)["resolver"]["outputArtifactQueries"]
        assert queries and "container" not in _executor(spec, name)
    assert len(compiled["vertex"]["yaml_docs"]) == 1  # no PVCs on Vertex AI


@pytest.mark.parametrize("target", runner.TARGETS)
def test_every_step_runs_the_pipeline_image_with_tfx_entrypoint(compiled, target):
    spec = compiled[target]["spec"]
    containers = [e["container"] for e in spec["deploymentSpec"]["executors"].values() if "container" in e]
    assert len(containers) == len(KFP_DEPENDENCIES)
    for container in containers:
        assert container["image"] == IMAGE
        assert container["command"] == TFX_ENTRYPOINT
    executor_classes = {task: _executor(spec, task)["container"]["args"][1] for task in KFP_DEPENDENCIES}
    assert executor_classes[EXAMPLE_GEN] == "components.example_gen.Executor"
    assert executor_classes[PUSHER] == "components.pusher.Executor"
    assert executor_classes["Evaluator"] == "components.evaluator.Executor"


@pytest.mark.parametrize("target", runner.TARGETS)
def test_parameters_pipeline_root_data_serving_dir_and_beam_args(compiled, target):
    job, spec = compiled[target]["job"], compiled[target]["spec"]
    assert job["runtimeConfig"]["gcsOutputDirectory"] == PIPELINE_ROOT
    assert _param(spec, EXAMPLE_GEN, "input_base") == DATA
    assert "data_dir" not in json.loads(_param(spec, "Trainer", "custom_config"))
    assert json.loads(_param(spec, PUSHER, "push_destination"))["filesystem"]["base_directory"] == f"{SERVING_DIR}/movielens"
    # The schema as a path inside the image, not on the compiling machine.
    assert _param(spec, SCHEMA_GEN, "schema_file") == str(runner.IMAGE_SCHEMA_PATH)
    assert str(runner.IMAGE_SCHEMA_PATH) == "/opt/movielens/pipeline/schema/schema.pbtxt"
    assert (ROOT / "pipeline" / "schema" / "schema.pbtxt").is_file()
    for task in BEAM_STEPS:
        args = _executor(spec, task)["container"]["args"]
        assert args[-len(BEAM_ARGS):] == BEAM_ARGS, task
        # --runner given: the local DirectRunner defaults are not added.
        assert not any(arg.startswith("--direct_") for arg in args), task


def test_kfp_target_mounts_the_manifests_pvcs_into_every_step(compiled):
    spec = compiled["kfp"]["spec"]
    docs = compiled["kfp"]["yaml_docs"]
    assert len(docs) == 2 and docs[0] == spec
    executors = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    containers = {label for label, e in spec["deploymentSpec"]["executors"].items() if "container" in e}
    assert set(executors) == containers
    claims = {doc["metadata"]["name"] for doc in _manifest_docs() if doc["kind"] == "PersistentVolumeClaim"}
    for config in executors.values():
        mounts = {m["pvcNameParameter"]["runtimeValue"]["constant"]: m["mountPath"] for m in config["pvcMount"]}
        assert mounts == {"movielens-data": "/data", "movielens-models": "/models"}
        assert set(mounts) <= claims
        assert all(m["constant"] == name for m, name in zip(config["pvcMount"], mounts))
    # What the steps open lies on those mounts.
    assert DATA.startswith("/data/") and SERVING_DIR == "/models"


def test_beam_args_default_to_the_local_direct_runner_and_pass_through():
    assert runner.beam_args([]) == list(runner.configs.DEFAULT_BEAM_ARGS)
    assert runner.beam_args(["--direct_num_workers=4"])[-1] == "--direct_num_workers=4"
    flink = ["--runner=FlinkRunner", "--flink_master=flink-jobmanager:8081", "--environment_type=EXTERNAL"]
    assert runner.beam_args(flink) == flink


@pytest.mark.parametrize("flag,value", [("--serving-dir", "http://bucket/models"), ("--data", "data/ml-1m"),
                                        ("--pvc", "movielens-models"), ("--work-dir", "relative"),
                                        ("--ratings", "gs://"), ("--data", "file:///data/ml-1m")])
def test_bad_container_paths_are_usage_errors(tmp_path, capsys, flag, value):
    argv = ["--image", IMAGE, "--pipeline-root", PIPELINE_ROOT, "--output", str(tmp_path / "p.json"), flag, value]
    assert runner.main(argv) == 2
    assert flag in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("target", runner.TARGETS)
def test_cloud_storage_paths_for_data_serving_and_work_dir(tmp_path, capsys, target):
    """Vertex AI with Dataflow: every path a gs:// URI, read and written through tf.io.gfile."""
    bucket = "gs://movielens-test-bucket"
    argv = ["--image", IMAGE, "--pipeline-root", PIPELINE_ROOT, "--target", target,
            "--data", f"{bucket}/data/ml-1m/", "--ratings", f"{bucket}/data/ratings.csv",
            "--serving-dir", f"{bucket}/serving", "--work-dir", f"{bucket}/work",
            "--output", str(tmp_path / "p.json")] + [f"--beam-arg={arg}" for arg in BEAM_ARGS]
    assert runner.main(argv) == 0
    job = json.loads((tmp_path / "p.json").read_text())
    spec = job["pipelineSpec"]
    assert _param(spec, EXAMPLE_GEN, "input_base") == f"{bucket}/data/ml-1m"
    trainer = json.loads(_param(spec, "Trainer", "custom_config"))
    assert "data_dir" not in trainer and "ratings_csv" not in trainer  # it reads the catalogue artifact
    assert f"{bucket}/data/ratings.csv" in _param(spec, EXAMPLE_GEN, "custom_config")
    assert trainer["checkpoint_dir"] == f"{bucket}/work/checkpoints"
    destination = json.loads(_param(spec, PUSHER, "push_destination"))["filesystem"]["base_directory"]
    assert destination == f"{bucket}/serving/movielens"
    # Nothing lives on a PVC, so none is mounted by default.
    docs = list(yaml.safe_load_all((tmp_path / "p.yaml").read_text()))
    assert len(docs) == 1
    assert "note: Vertex AI mounts no PVCs" not in capsys.readouterr().err


def test_pvcs_default_to_those_holding_a_container_path(tmp_path):
    assert runner.default_pvcs(["gs://b/data", "/models/movielens", "/models/.work"]) == [("movielens-models", "/models")]
    assert runner.default_pvcs(["/data/ml-1m", "gs://b/serving"]) == [("movielens-data", "/data")]
    assert runner.default_pvcs(["gs://b/data", "gs://b/serving"]) == []
    assert runner.default_pvcs(["/datasets/x"]) == []  # /data is not a prefix of /datasets
    # An explicit --pvc still mounts, whatever the paths.
    argv = ["--image", IMAGE, "--pipeline-root", PIPELINE_ROOT, "--data", "gs://b/ml-1m", "--serving-dir", "gs://b/s",
            "--work-dir", "gs://b/w", "--pvc", "movielens-models:/models", "--output", str(tmp_path / "p.json")]
    assert runner.main(argv) == 0
    docs = list(yaml.safe_load_all((tmp_path / "p.yaml").read_text()))
    mounts = [m["mountPath"] for e in docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()
              for m in e["pvcMount"]]
    assert mounts and set(mounts) == {"/models"}


def test_help_names_the_parameters(capsys):
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--image", "--pipeline-root", "--data", "--serving-dir", "--beam-arg", "--target", "--pvc", "--output"):
        assert flag in text
    assert str(runner.DEFAULT_OUTPUT) in text or "movielens_pipeline.json" in text


# --------------------------------------------------------------------------- manifests

def _kustomization() -> dict:
    return yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())


def _manifest_docs() -> list[dict]:
    docs = []
    for name in _kustomization()["resources"]:
        docs.extend(doc for doc in yaml.safe_load_all((MANIFESTS / name).read_text()) if doc)
    return docs


def _doc_id(doc: dict) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("doc", _manifest_docs(), ids=_doc_id)
def test_manifest_is_valid_for_its_kind(doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_every_manifest_file_is_listed_in_the_kustomization():
    listed = set(_kustomization()["resources"])
    on_disk = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_validation_is_strict():
    """A misspelt field or a wrong type fails: the schema check is not a formality."""
    deployment = next(d for d in _manifest_docs() if d["kind"] == "Deployment")
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/", "port": 1}}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    for bad in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


# kustomize emulation ----------------------------------------------------------------------

SUPPORTED_KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "namespace", "labels", "resources", "images"}
CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding",
                  "CustomResourceDefinition", "PriorityClass"}


def _set_images(node, images: list[dict]) -> None:
    """kustomize's image transformer: every containers/initContainers entry, by image name."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                for container in value:
                    name = re.split(r"[@]|:(?=[^/]*$)", container["image"])[0]
                    for image in images:
                        if image["name"] == name:
                            new = image.get("newName", name)
                            if "digest" in image:
                                new += "@" + image["digest"]
                            elif "newTag" in image:
                                new += ":" + str(image["newTag"])
                            else:
                                new = container["image"].replace(name, image.get("newName", name), 1)
                            container["image"] = new
            else:
                _set_images(value, images)
    elif isinstance(node, list):
        for item in node:
            _set_images(item, images)


def render_kustomization(directory: Path) -> list[dict]:
    """What `kustomize build directory` outputs, for the fields kustomization.yaml uses."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED_KUSTOMIZATION_FIELDS
    assert not unsupported, f"the test's kustomize emulation does not implement {unsupported}"
    docs = []
    for resource in kustomization["resources"]:
        path = directory / resource
        assert path.is_file(), f"kustomization resource {resource} is not a file"
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    namespace = kustomization.get("namespace")
    for doc in docs:
        metadata = doc["metadata"]
        if namespace:
            if doc["kind"] == "Namespace":
                metadata["name"] = namespace
            elif doc["kind"] not in CLUSTER_SCOPED:
                metadata["namespace"] = namespace
        for entry in kustomization.get("labels", []):
            assert not entry.get("includeSelectors") and not entry.get("includeTemplates"), \
                "the emulation implements metadata labels only"
            metadata.setdefault("labels", {}).update(entry["pairs"])
        _set_images(doc, kustomization.get("images", []))
    return docs


def _kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict]:
    docs = render_kustomization(MANIFESTS)
    by_id = {_doc_id(doc): doc for doc in docs}
    assert len(by_id) == len(docs), "two resources with one kind/name"
    return by_id


def test_emulation_matches_real_kustomize(rendered):
    command = _kustomize_command()
    if command is None:
        pytest.skip("no kustomize or kubectl on PATH: the emulated rendering is asserted on alone")
    result = subprocess.run(command + [str(MANIFESTS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    real = {_doc_id(doc): doc for doc in yaml.safe_load_all(result.stdout) if doc}
    assert real == rendered


def test_image_override_renders_like_kustomize(tmp_path):
    """`kustomize edit set image movielens-tfx=REGISTRY/...:TAG` reaches every pipeline-image container."""
    copy_dir = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy_dir)
    kustomization = _kustomization()
    kustomization["images"] = [{"name": "movielens-tfx", "newName": "registry.example:5000/ml/movielens-tfx",
                                "newTag": "2.0.0"}]
    (copy_dir / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    docs = {_doc_id(doc): doc for doc in render_kustomization(copy_dir)}
    images = {name: _pod(doc)["spec"]["containers"][0]["image"] for name, doc in docs.items()
              if doc["kind"] in ("Deployment", "CronJob")}
    assert images == {"Deployment/movielens-tf-serving": f"tensorflow/serving:{_serving_api_pin()}",
                      "CronJob/movielens-export-index": "registry.example:5000/ml/movielens-tfx:2.0.0",
                      "Deployment/movielens-similarity": "registry.example:5000/ml/movielens-tfx:2.0.0"}
    command = _kustomize_command()
    if command is not None:
        result = subprocess.run(command + [str(copy_dir)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert {_doc_id(doc): doc for doc in yaml.safe_load_all(result.stdout) if doc} == docs


def test_rendered_set(rendered):
    assert sorted(rendered) == sorted([
        "Namespace/movielens",
        "PersistentVolumeClaim/movielens-data",
        "PersistentVolumeClaim/movielens-models",
        "PersistentVolumeClaim/movielens-index",
        "Deployment/movielens-tf-serving",
        "Service/movielens-tf-serving",
        "CronJob/movielens-export-index",
        "Deployment/movielens-similarity",
        "Service/movielens-similarity",
        "HorizontalPodAutoscaler/movielens-similarity",
    ])
    for doc in rendered.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "movielens-tfx"
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE


def _pod(doc: dict) -> dict:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]
    return doc["spec"]["template"]


def _claims(pod_spec: dict) -> dict[str, tuple[str, bool]]:
    """mount path -> (claim name, read-only) for the PVC mounts of the pod's first container."""
    volumes = {v["name"]: v["persistentVolumeClaim"] for v in pod_spec["volumes"] if "persistentVolumeClaim" in v}
    mounts = pod_spec["containers"][0]["volumeMounts"]
    return {m["mountPath"]: (volumes[m["name"]]["claimName"], bool(m.get("readOnly")))
            for m in mounts if m["name"] in volumes}


def _serving_api_pin() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    return re.search(r'"tensorflow-serving-api==([^"]+)"', text).group(1)


def test_tf_serving(rendered):
    deployment = rendered["Deployment/movielens-tf-serving"]
    pod = _pod(deployment)["spec"]
    container = pod["containers"][0]
    assert container["image"] == f"tensorflow/serving:{_serving_api_pin()}"
    for flag in ("--model_name=movielens", "--model_base_path=/models/movielens", "--enable_model_warmup=true",
                 "--port=8500", "--rest_api_port=8501"):
        assert flag in container["args"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"grpc": 8500, "http": 8501}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/v1/models/movielens", "port": "http"}
    assert _claims(pod) == {"/models": ("movielens-models", True)}
    service = rendered["Service/movielens-tf-serving"]
    assert {p["port"] for p in service["spec"]["ports"]} == {8500, 8501}


def test_export_index_job(rendered):
    cronjob = rendered["CronJob/movielens-export-index"]
    pod = _pod(cronjob)["spec"]
    container = pod["containers"][0]
    assert container["image"] == "movielens-tfx:0.1.0"
    assert container["command"] + container["args"] == [
        "movielens-tfx", "export-index", "--model-base-path", "/models/movielens", "--index-dir", "/index"]
    # No data PVC: the index reads the catalogue the pushed model version carries.
    assert _claims(pod) == {"/models": ("movielens-models", True), "/index": ("movielens-index", False)}
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"


def test_similarity_service_and_autoscaler(rendered):
    deployment = rendered["Deployment/movielens-similarity"]
    pod = _pod(deployment)["spec"]
    container = pod["containers"][0]
    assert container["image"] == "movielens-tfx:0.1.0"
    assert container["command"] + container["args"] == [
        "movielens-tfx", "similarity-service", "--host", "0.0.0.0", "--port", "8600", "--index-dir", "/index",
        "--model-base-path", "/models/movielens"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert _claims(pod) == {"/index": ("movielens-index", True), "/models": ("movielens-models", True)}
    hpa = rendered["HorizontalPodAutoscaler/movielens-similarity"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "movielens-similarity"}
    assert container["resources"]["requests"]["cpu"]  # utilization needs a CPU request
    service = rendered["Service/movielens-similarity"]
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8600, "http")]


@pytest.mark.parametrize("workload", ["Deployment/movielens-tf-serving", "CronJob/movielens-export-index",
                                      "Deployment/movielens-similarity"])
def test_workloads_are_locked_down(rendered, workload):
    template = _pod(rendered[workload])
    pod = template["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        # Claims referenced exist in the set, in the same namespace.
        for claim, _ in _claims(pod).values():
            assert f"PersistentVolumeClaim/{claim}" in rendered
    if rendered[workload]["kind"] == "Deployment":
        selector = rendered[workload]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["metadata"]["labels"].items()
        service = rendered[workload.replace("Deployment", "Service")]
        assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()


@pytest.mark.parametrize("name", ["movielens-tf-serving", "movielens-similarity"])
def test_servers_keep_answering_for_a_delay_after_leaving_the_endpoints(name):
    """Kubernetes removes a terminating pod from the Service's endpoints while it runs
    preStop: a sleep there (the shutdown delay) answers requests already on their way, and the
    grace period leaves room for it and the drain before SIGKILL."""
    (deployment,) = [d for d in _manifest_docs() if d["kind"] == "Deployment" and d["metadata"]["name"] == name]
    pod = deployment["spec"]["template"]["spec"]
    command = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and int(command[1]) >= 5
    assert pod.get("terminationGracePeriodSeconds", 30) >= int(command[1]) + 20


# --------------------------------------------------------------------------- the local launcher

def test_the_launcher_orders_and_prepares_every_step_of_the_compiled_kfp_spec(compiled, tmp_path):
    from kubeflow import launcher

    spec = compiled["kfp"]["spec"]
    order = launcher.task_order(spec)
    assert sorted(order) == sorted(KFP_DEPENDENCIES)
    for task, deps in KFP_DEPENDENCIES.items():
        assert all(order.index(dep) < order.index(task) for dep in deps), task
    ran = []

    def run_container(step):  # stands in for podman: records the step, reports its outputs as given
        ran.append(step)
        assert step.image == IMAGE and step.command[:3] == TFX_ENTRYPOINT[:3]
        assert "{{$}}" not in " ".join(step.args)
        executor_input = json.loads(step.args[step.args.index("--json_serialized_invocation_args") + 1])
        assert executor_input == step.executor_input
        outputs = {key: {"artifacts": [{**a["artifacts"][0], "metadata": {"made_by": step.task}}]}
                   for key, a in executor_input["outputs"]["artifacts"].items()}
        path = Path(str(tmp_path) + executor_input["outputs"]["outputFile"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"artifacts": outputs}))
        return 0.0

    seconds = launcher.Launcher(spec, "/root", run_container, lambda p: str(tmp_path) + p, run_id="r1").run()
    assert list(seconds) == order and [s.task for s in ran] == order
    by_task = {s.task: s for s in ran}
    # ExampleGen's driver (span, version, fingerprint) runs first, with the same ExecutorInput
    command, args = by_task[EXAMPLE_GEN].pre_cache_check
    assert "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver" in command + args
    assert json.loads(args[args.index("--json_serialized_invocation_args") + 1]) == by_task[EXAMPLE_GEN].executor_input
    # the Trainer reads Transform's outputs as Transform reported them, typed for TFX
    examples = by_task["Trainer"].executor_input["inputs"]["artifacts"]["examples"]["artifacts"][0]
    assert examples["uri"] == "/root/Transform/r1/transformed_examples"
    assert examples["metadata"] == {"made_by": "Transform"}
    assert "title: tfx.Examples" in examples["type"]["instanceSchema"]
    catalogue = by_task["Trainer"].executor_input["inputs"]["artifacts"]["catalogue"]["artifacts"][0]
    assert "title: movielens.Catalogue" in catalogue["type"]["instanceSchema"]
    names = [a["artifacts"][0]["name"] for s in ran for a in s.executor_input["outputs"]["artifacts"].values()]
    assert len(names) == len(set(names))  # TFX maps artifact names to ids: they must not collide


def test_custom_artifact_types_import_by_their_kfp_schema_title():
    """TFX's step entrypoint imports a custom type's schema title as a class path."""
    from kfp.pipeline_spec import pipeline_spec_pb2 as pb
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as entrypoint
    from tfx.utils import import_utils

    from data.catalogue import MovieLensCatalogue

    schema = pb.ArtifactTypeSchema(instance_schema=f"title: {MovieLensCatalogue.TYPE_NAME}\ntype: object\n")
    assert import_utils.import_class_by_path(entrypoint._retrieve_class_path(schema)) is MovieLensCatalogue


def test_worker_flags_go_into_the_trainer_of_the_compiled_spec(tmp_path):
    argv = ["--image", IMAGE, "--pipeline-root", PIPELINE_ROOT, "--data", "gs://b/ml-1m", "--serving-dir", "gs://b/s",
            "--work-dir", "gs://b/w"]
    assert runner.main(argv + ["--trainer-workers", "3", "--output", str(tmp_path / "kfp.json")]) == 0
    config = json.loads(_param(json.loads((tmp_path / "kfp.json").read_text())["pipelineSpec"], "Trainer",
                               "custom_config"))
    assert config["workers"] == 3
    assert runner.main(argv + ["--target", "vertex", "--trainer-workers", "4", "--vertex-project", "p1",
                               "--vertex-region", "us-central1", "--output", str(tmp_path / "vertex.json")]) == 0
    spec = json.loads((tmp_path / "vertex.json").read_text())["pipelineSpec"]
    config = json.loads(_param(spec, "Trainer", "custom_config"))
    assert "workers" not in config and config["ai_platform_enable_vertex"] is True
    assert config["ai_platform_vertex_region"] == "us-central1"
    pools = config["ai_platform_training_args"]["job_spec"]["worker_pool_specs"]
    assert [p["replica_count"] for p in pools] == [1, 3]
    assert all(p["container_spec"]["image_uri"] == IMAGE for p in pools)
    assert config["ai_platform_training_args"]["project"] == "p1"
    args = _executor(spec, "Trainer")["container"]["args"]
    assert "components.vertex_trainer.Executor" in args


@pytest.mark.parametrize("extra, message", [
    (["--trainer-workers", "0"], "at least 1"),
    (["--vertex-project", "p1"], "needs --target vertex"),
])
def test_bad_worker_flags_are_usage_errors(tmp_path, capsys, extra, message):
    argv = ["--image", IMAGE, "--pipeline-root", PIPELINE_ROOT, "--output", str(tmp_path / "x.json")]
    assert runner.main(argv + extra) == 2
    assert message in capsys.readouterr().err
