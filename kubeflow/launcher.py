"""Runs a compiled KFP v2 pipeline spec task by task, the way KFP's launcher runs each step.

Why: `make kubeflow-local` runs the pipeline that `kubeflow.runner` compiles, each step in the
pipeline image, without a Kubeflow cluster. KFP's own local runner (`kfp.local`) cannot
execute the spec TFX compiles (kubeflow/README.md, "Run the compiled pipeline locally",
says which features it lacks), so this module does what the KFP v2 launcher does for each
container task of the spec, no more:

* the tasks run in the DAG's order (`dependentTasks` and the producers of their inputs);
* each gets its ExecutorInput, the JSON that replaces the `{{$}}` placeholder of its
  container arguments: constant parameters from the task, input artifacts as their producer's
  ExecutorOutput recorded them (uri and metadata, typed by the producer's output definition),
  and fresh output artifacts under the pipeline root, `<root>/<task>/<run id>/<output key>`;
* a container's `lifecycle.preCacheCheck` (TFX's ExampleGen driver: span, version and input
  fingerprint) runs first with the same ExecutorInput; TFX's executor entrypoint reads the
  driver's output file back (kubeflow_v2_run_executor), as it does on Vertex AI;
* the step's ExecutorOutput (its `outputFile`) gives its artifacts' final metadata to the
  steps after it.

Running a container is the caller's (`run_container`): kubeflow.local_run does it with podman.
Only `{{$}}` placeholders are substituted (TFX's compiled steps use no other); a spec with
others, or with importer, resolver or sub-DAG tasks, is refused with the task named.
"""
from __future__ import annotations

import json
import os
import posixpath
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

EXECUTOR_INPUT_PLACEHOLDER = "{{$}}"
OUTPUT_FILE = "executor_output.json"


class SpecError(ValueError):
    """The compiled spec asks for something this launcher does not do (named in the message)."""


@dataclass
class Step:
    """One container task, ready to run: its image, command and arguments with the
    ExecutorInput substituted, and the driver (preCacheCheck) to run first, if any."""

    task: str
    image: str
    command: list[str]
    args: list[str]
    env: dict[str, str]
    executor_input: dict
    pre_cache_check: tuple[list[str], list[str]] | None = None
    output_dirs: list[str] = field(default_factory=list)


def task_order(pipeline_spec: Mapping[str, Any]) -> list[str]:
    """The root DAG's task names, each after every task it depends on (stable: ties keep the
    spec's order)."""
    tasks = pipeline_spec["root"]["dag"]["tasks"]
    needs = {name: set(task.get("dependentTasks", [])) | _producers(task) for name, task in tasks.items()}
    for name, deps in needs.items():
        unknown = deps - set(tasks)
        if unknown:
            raise SpecError(f"task {name} depends on unknown task(s) {sorted(unknown)}")
    order: list[str] = []
    while len(order) < len(tasks):
        ready = [name for name in tasks if name not in order and needs[name] <= set(order)]
        if not ready:
            raise SpecError(f"the DAG has a cycle among {sorted(set(tasks) - set(order))}")
        order.append(ready[0])
    return order


def _producers(task: Mapping[str, Any]) -> set[str]:
    artifacts = task.get("inputs", {}).get("artifacts", {})
    return {ref["taskOutputArtifact"]["producerTask"] for ref in artifacts.values() if "taskOutputArtifact" in ref}


def _artifact_type(definition: Mapping[str, Any]) -> dict:
    """An output definition's artifactType as a RuntimeArtifact's `type` (TFX recovers the
    Python class from its schema title, kubeflow_v2_entrypoint_utils._retrieve_class_path)."""
    artifact_type = definition.get("artifactType", {})
    if "instanceSchema" in artifact_type:
        return {"instanceSchema": artifact_type["instanceSchema"]}
    if "schemaTitle" in artifact_type:
        return {"schemaTitle": artifact_type["schemaTitle"]}
    raise SpecError(f"artifact definition without a type: {definition!r}")


def _parameter(task_name: str, name: str, ref: Mapping[str, Any]) -> Any:
    """A task's input parameter value; TFX's compiled steps only pass constants."""
    value = ref.get("runtimeValue", {})
    if "constant" in value:
        return value["constant"]
    if "constantValue" in value:  # the pre-2.1 schema: {"stringValue": ...} / {"intValue": ...}
        constant = value["constantValue"]
        return next(iter(constant.values()))
    raise SpecError(f"task {task_name}: parameter {name} is not a constant ({ref!r}); only constants are supported")


@dataclass
class Launcher:
    """Runs a compiled PipelineSpec's tasks in order under ``pipeline_root`` (as the
    containers see it), calling ``run_container(step)`` for each; ``host_path`` maps a
    container path to this machine's (to read ExecutorOutputs and make output folders)."""

    pipeline_spec: Mapping[str, Any]
    pipeline_root: str
    run_container: Callable[[Step], float]
    host_path: Callable[[str], str]
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))
    platform_env: Mapping[str, str] = field(default_factory=dict)
    #: task -> output key -> the RuntimeArtifacts its ExecutorOutput recorded
    produced: dict[str, dict[str, list[dict]]] = field(default_factory=dict)

    def step(self, task_name: str) -> Step:
        spec = self.pipeline_spec
        task = spec["root"]["dag"]["tasks"][task_name]
        if "componentRef" not in task:
            raise SpecError(f"task {task_name} has no componentRef")
        component = spec["components"][task["componentRef"]["name"]]
        if "dag" in component:
            raise SpecError(f"task {task_name} is a sub-DAG; only container tasks are supported")
        executor = spec["deploymentSpec"]["executors"].get(component.get("executorLabel", ""), {})
        if "container" not in executor:
            kind = next(iter(executor), "none")
            raise SpecError(f"task {task_name} runs a {kind!r} executor; only container executors are supported "
                            "(the kfp target compiles none of the others)")
        container = executor["container"]
        task_dir = posixpath.join(self.pipeline_root, task_name, self.run_id)
        outputs: dict[str, dict] = {}
        for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
            uri = posixpath.join(task_dir, key)
            outputs[key] = {"artifacts": [{"name": f"local/{self.run_id}/{task_name}/{key}",
                                           "type": _artifact_type(definition), "uri": uri, "metadata": {}}]}
        inputs: dict[str, Any] = {"parameterValues": {}, "artifacts": {}}
        for name, ref in task.get("inputs", {}).get("parameters", {}).items():
            inputs["parameterValues"][name] = _parameter(task_name, name, ref)
        for name, ref in task.get("inputs", {}).get("artifacts", {}).items():
            if "taskOutputArtifact" not in ref:
                raise SpecError(f"task {task_name}: input artifact {name} does not come from a task ({ref!r})")
            producer = ref["taskOutputArtifact"]["producerTask"]
            key = ref["taskOutputArtifact"]["outputArtifactKey"]
            if key not in self.produced.get(producer, {}):
                raise SpecError(f"task {task_name}: input {name} needs {producer}.{key}, which has not been produced")
            inputs["artifacts"][name] = {"artifacts": self.produced[producer][key]}
        executor_input = {"inputs": inputs,
                          "outputs": {"artifacts": outputs, "outputFile": posixpath.join(task_dir, OUTPUT_FILE)}}
        serialized = json.dumps(executor_input, sort_keys=True)
        pre = None
        hook = container.get("lifecycle", {}).get("preCacheCheck")
        if hook:
            pre = (list(hook.get("command", [])), _substitute(task_name, hook.get("args", []), serialized))
        env = {item["name"]: item.get("value", "") for item in container.get("env", [])}
        return Step(task=task_name, image=container["image"], command=list(container.get("command", [])),
                    args=_substitute(task_name, container.get("args", []), serialized), env={**env, **self.platform_env},
                    executor_input=executor_input, pre_cache_check=pre,
                    output_dirs=[task_dir] + [o["artifacts"][0]["uri"] for o in outputs.values()])

    def record_outputs(self, step: Step) -> None:
        """What the step produced, for the steps after it: its ExecutorOutput's artifacts
        (final uri and metadata) typed as the output definitions type them; an output the
        step did not report keeps the artifact it was given."""
        given = step.executor_input["outputs"]["artifacts"]
        path = self.host_path(step.executor_input["outputs"]["outputFile"])
        reported: dict = {}
        if os.path.exists(path):
            with open(path) as handle:
                reported = json.load(handle).get("artifacts", {})
        produced = {}
        for key, artifact_list in given.items():
            original = artifact_list["artifacts"][0]
            out = reported.get(key, {}).get("artifacts") or [original]
            produced[key] = [{"name": a.get("name") or original["name"], "type": original["type"],
                              "uri": a.get("uri") or original["uri"], "metadata": a.get("metadata", {})}
                             for a in out]
        self.produced[step.task] = produced

    def run(self, tasks: Sequence[str] | None = None, on_step: Callable[[str, float], None] | None = None
            ) -> dict[str, float]:
        """Runs ``tasks`` (default: all, in DAG order); returns each task's seconds."""
        seconds: dict[str, float] = {}
        for name in tasks or task_order(self.pipeline_spec):
            step = self.step(name)
            for folder in step.output_dirs:
                os.makedirs(self.host_path(folder), exist_ok=True)
            seconds[name] = round(self.run_container(step), 2)
            self.record_outputs(step)
            if on_step:
                on_step(name, seconds[name])
        return seconds


def _substitute(task_name: str, args: Sequence[str], executor_input: str) -> list[str]:
    """The arguments with `{{$}}` replaced by the ExecutorInput JSON; any other placeholder is
    refused, naming it, rather than passed to the step as text."""
    out = []
    for arg in args:
        if "{{$." in arg:
            start = arg.index("{{$.")
            raise SpecError(f"task {task_name}: placeholder {arg[start:arg.find('}}', start) + 2]} is not supported")
        out.append(arg.replace(EXECUTOR_INPUT_PLACEHOLDER, executor_input))
    return out
