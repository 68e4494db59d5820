"""kubeflow.launcher on small hand-written specs: DAG order, ExecutorInput, outputs handed on,
the preCacheCheck driver, and clear refusals of what it does not do. (The compiled TFX spec is
run through it in tests/test_kubeflow.py; the real containers in `make kubeflow-local`.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubeflow import launcher

EXAMPLES = {"artifactType": {"instanceSchema": "title: tfx.Examples\ntype: object\n"}}


def _spec(tasks: dict, args=("--json_serialized_invocation_args", "{{$}}"), lifecycle=None) -> dict:
    components, executors = {}, {}
    for name in tasks:
        components[f"comp-{name}"] = {"executorLabel": f"exec-{name}",
                                      "outputDefinitions": {"artifacts": {"out": EXAMPLES}}}
        container = {"image": "img:1", "command": ["python", "-m", "step"], "args": list(args)}
        if lifecycle and name in lifecycle:
            container["lifecycle"] = {"preCacheCheck": {"command": ["python", "-m", "driver"], "args": list(args)}}
        executors[f"exec-{name}"] = {"container": container}
    dag = {name: {"componentRef": {"name": f"comp-{name}"}, **task} for name, task in tasks.items()}
    return {"root": {"dag": {"tasks": dag}}, "components": components, "deploymentSpec": {"executors": executors}}


def _fed_by(producer: str) -> dict:
    return {"inputs": {"artifacts": {"examples": {"taskOutputArtifact": {"producerTask": producer,
                                                                         "outputArtifactKey": "out"}}}}}


def test_tasks_run_after_their_dependencies_and_producers():
    spec = _spec({"c": {**_fed_by("b"), "dependentTasks": ["a"]}, "b": _fed_by("a"), "a": {}, "d": {}})
    order = launcher.task_order(spec)
    assert order.index("a") < order.index("b") < order.index("c") and set(order) == {"a", "b", "c", "d"}


def test_a_cycle_or_an_unknown_dependency_is_named():
    with pytest.raises(launcher.SpecError, match="cycle"):
        launcher.task_order(_spec({"a": _fed_by("b"), "b": _fed_by("a")}))
    with pytest.raises(launcher.SpecError, match="unknown task"):
        launcher.task_order(_spec({"a": {"dependentTasks": ["zz"]}}))


def test_outputs_reach_the_next_step_with_the_metadata_the_producer_reported(tmp_path):
    spec = _spec({"a": {"inputs": {"parameters": {"n": {"runtimeValue": {"constant": 3}}}}}, "b": _fed_by("a")},
                 lifecycle={"a"})
    seen = []

    def run(step: launcher.Step) -> float:
        seen.append(step)
        out = step.executor_input["outputs"]
        given = out["artifacts"]["out"]["artifacts"][0]
        path = Path(str(tmp_path) + out["outputFile"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"artifacts": {"out": {"artifacts": [
            {"uri": given["uri"], "metadata": {"split_names": '["train"]', "step": step.task}}]}}}))
        return 1.5

    done = launcher.Launcher(spec, "/root", run, lambda p: str(tmp_path) + p, run_id="r").run()
    assert done == {"a": 1.5, "b": 1.5}
    a, b = seen
    assert a.executor_input["inputs"]["parameterValues"] == {"n": 3}
    assert a.args == ["--json_serialized_invocation_args", json.dumps(a.executor_input, sort_keys=True)]
    assert a.pre_cache_check == (["python", "-m", "driver"], a.args) and b.pre_cache_check is None
    assert a.executor_input["outputs"]["outputFile"] == "/root/a/r/executor_output.json"
    handed = b.executor_input["inputs"]["artifacts"]["examples"]["artifacts"]
    assert handed == [{"name": "local/r/a/out", "type": {"instanceSchema": "title: tfx.Examples\ntype: object\n"},
                       "uri": "/root/a/r/out", "metadata": {"split_names": '["train"]', "step": "a"}}]
    assert (tmp_path / "root" / "b" / "r" / "out").is_dir()  # output folders exist before a step runs


def test_an_output_the_step_did_not_report_keeps_the_artifact_it_was_given(tmp_path):
    spec = _spec({"a": {}, "b": _fed_by("a")})
    seen = []
    launcher.Launcher(spec, "/root", lambda step: seen.append(step) or 0.0, lambda p: str(tmp_path) + p,
                      run_id="r").run()
    handed = seen[1].executor_input["inputs"]["artifacts"]["examples"]["artifacts"][0]
    assert handed["uri"] == "/root/a/r/out" and handed["metadata"] == {}


@pytest.mark.parametrize("spec, message", [
    (_spec({"a": {}}, args=("--x", "{{$.inputs.parameters['n']}}")), "placeholder {{$.inputs.parameters['n']}}"),
    (_spec({"a": {"inputs": {"parameters": {"n": {"componentInputParameter": "n"}}}}}), "not a constant"),
    (_spec({"a": {"inputs": {"artifacts": {"x": {"componentInputArtifact": "x"}}}}}), "does not come from a task"),
])
def test_what_the_launcher_does_not_do_is_refused_naming_the_task(spec, message):
    with pytest.raises(launcher.SpecError, match=r"task a") as error:
        launcher.Launcher(spec, "/root", lambda step: 0.0, lambda p: p).step("a")
    assert message in str(error.value)


def test_a_non_container_executor_is_refused():
    spec = _spec({"a": {}})
    spec["deploymentSpec"]["executors"]["exec-a"] = {"importer": {}}
    with pytest.raises(launcher.SpecError, match="'importer' executor"):
        launcher.Launcher(spec, "/root", lambda step: 0.0, lambda p: p).step("a")
