"""Training across workers: TensorFlow's MultiWorkerMirroredStrategy, set up from TF_CONFIG.

Why this shape: a TFX Trainer trains past one machine the way TensorFlow does, with
`tf.distribute.MultiWorkerMirroredStrategy` (synchronous data parallelism, one all-reduce of
the gradients per step) and a TF_CONFIG environment variable that names the cluster and this
process's place in it. Vertex AI (TFX's Vertex training extension) and Kubeflow's Training
Operator (a TFJob) both start every worker with TF_CONFIG set, and run the same `run_fn` on
each; `Cluster.from_env` reads it. On one machine, `launch_local_workers` starts the
workers itself, on loopback ports, with the TF_CONFIG each would get on a cluster
(`movielens-tfx run --trainer-workers N`).

Every worker runs the whole `run_fn` in lockstep: the strategy's collectives need each of
them to build the same model, call `fit`, `predict` and `save` the same number of times.
Only the chief's outputs are kept: the others export into a temporary folder, as
TensorFlow's multi-worker guide prescribes (saving reads the variables with collectives, so
every worker has to take part).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Iterator, Mapping, Sequence

from common.errors import UserError
from common.ports import free_ports

TF_CONFIG = "TF_CONFIG"
#: The task types a TF_CONFIG cluster may hold that train (an "evaluator" or "ps" does not).
TRAINING_TASKS = ("chief", "worker")


@dataclass(frozen=True)
class Cluster:
    """The training cluster of TF_CONFIG and this process's task in it."""

    #: task type -> its tasks' "host:port" addresses, as TF_CONFIG lists them
    tasks: Mapping[str, tuple[str, ...]]
    task_type: str
    task_index: int

    @property
    def size(self) -> int:
        """How many processes train (chief and workers)."""
        return sum(len(self.tasks.get(kind, ())) for kind in TRAINING_TASKS)

    @property
    def is_chief(self) -> bool:
        """The task whose outputs are kept: the "chief" if the cluster has one, else worker 0
        (TensorFlow's own rule, `multi_worker_util.is_chief`)."""
        if "chief" in self.tasks:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def task_name(self) -> str:
        return f"{self.task_type}-{self.task_index}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Cluster | None":
        """The cluster TF_CONFIG describes, or None when it is unset or names a single
        training task (one process: no strategy needed). A malformed TF_CONFIG is a UserError
        naming what is wrong, not a failure deep inside TensorFlow."""
        raw = (os.environ if environ is None else environ).get(TF_CONFIG, "").strip()
        if not raw:
            return None
        try:
            config = json.loads(raw)
        except json.JSONDecodeError as e:
            raise UserError(f"{TF_CONFIG} is not JSON ({e.msg} at character {e.pos})") from None
        if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
            raise UserError(f'{TF_CONFIG} has no "cluster" object: expected '
                            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}')
        tasks: dict[str, tuple[str, ...]] = {}
        for kind, addresses in config["cluster"].items():
            if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
                raise UserError(f'{TF_CONFIG} cluster["{kind}"]: expected a list of "host:port" strings')
            tasks[kind] = tuple(addresses)
        task = config.get("task") or {}
        kind, index = task.get("type"), task.get("index", 0)
        if kind not in tasks or not isinstance(index, int) or not 0 <= index < len(tasks[kind]):
            raise UserError(f'{TF_CONFIG} task {task!r} is not one of the cluster\'s tasks ({sorted(tasks)})')
        cluster = cls(tasks, kind, index)
        if kind not in TRAINING_TASKS:
            raise UserError(f"{TF_CONFIG} task type {kind!r}: the Trainer runs on the chief and workers only")
        return cluster if cluster.size > 1 else None


def strategy(cluster: Cluster):
    """TensorFlow's MultiWorkerMirroredStrategy for ``cluster`` (read from TF_CONFIG).

    It has to be made before the process runs any TensorFlow op (it configures the
    collective ops of the eager context), so `run_fn` makes it first. Ring all-reduce: the
    gradients are a few MB, and on CPUs without NCCL ring is TensorFlow's choice too."""
    import tensorflow as tf

    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def is_multi_worker(strategy_: Any) -> bool:
    """True for a strategy whose replicas span processes (its collectives cross workers)."""
    import tensorflow as tf

    return isinstance(strategy_, tf.distribute.MultiWorkerMirroredStrategy) and \
        strategy_.extended._in_multi_worker_mode()  # pylint: disable=protected-access


def per_replica_logs(logs: Mapping[str, Any]) -> dict[str, Any]:
    """A train/test step's logs with every scalar as a one-element vector.

    Why: under a multi-worker strategy, Keras 3 reduces each step's per-replica logs with
    ``strategy.reduce(MEAN, value, axis=0)`` (keras/src/backend/tensorflow/trainer.py,
    ``reduce_per_replica``), which fails on a scalar ("axis 0 out of range for a rank-0
    tensor", keras-team/keras#20585). A [1] vector reduces to the mean over the replicas,
    and Keras's epoch logs come from the metrics' synchronised state either way."""
    import tensorflow as tf

    return {k: tf.reshape(v, [1]) if isinstance(v, tf.Tensor) and v.shape.rank == 0 else v
            for k, v in logs.items()}


@contextlib.contextmanager
def fit_scope(model: Any, strategy_: Any) -> Iterator[None]:
    """Where `model.fit` runs: inside ``strategy_``'s scope, with Keras told to take the
    strategy from that scope (experimental: Keras 3 otherwise fed the step PerReplica inputs
    outside `strategy.run`); nothing changes without a strategy."""
    if strategy_ is None:
        yield
        return
    model._distribute_strategy = None  # pylint: disable=protected-access  (Keras: get_strategy())
    with strategy_.scope():
        yield


def local_tf_configs(n: int, ports: Sequence[int] | None = None) -> list[dict]:
    """The TF_CONFIG of each of ``n`` workers on this machine's loopback: worker 0 is the chief."""
    ports = list(ports) if ports is not None else free_ports(n)
    if len(ports) != n:
        raise ValueError(f"{n} workers need {n} ports, got {len(ports)}")
    workers = [f"127.0.0.1:{port}" for port in ports]
    return [{"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}} for i in range(n)]


def _relay(stream: IO[bytes], prefix: str, sink: IO[str], log: IO[str] | None) -> None:
    """Copies a worker's output lines to ``sink`` (and ``log``) with its name in front."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        sink.write(f"{prefix} {line}\n")
        sink.flush()
        if log is not None:
            log.write(line + "\n")
            log.flush()


class WorkerFailure(RuntimeError):
    """A local worker exited non-zero; the others were stopped."""

    def __init__(self, worker: int, returncode: int, log_path: str | None, tail: str):
        super().__init__(worker, returncode)
        self.worker, self.returncode, self.log_path, self.tail = worker, returncode, log_path, tail

    def __str__(self) -> str:
        where = f" (its log: {self.log_path})" if self.log_path else ""
        return f"trainer worker {self.worker} exited with status {self.returncode}{where}:\n{self.tail}"


def launch_local_workers(n: int, command: Sequence[str], *, env: Mapping[str, str] | None = None,
                         log_dir: str | None = None, cpus_per_worker: int | None = None,
                         timeout: float | None = None, sink: IO[str] | None = None) -> list[float]:
    """Runs ``command`` as ``n`` local worker processes, each with its TF_CONFIG (loopback
    ports, worker 0 the chief), and waits for all of them; returns each worker's seconds.

    Each worker's output goes to ``sink`` (default stderr) prefixed with ``[worker i]`` and,
    with ``log_dir``, to ``log_dir/worker-i.log``. ``cpus_per_worker`` pins worker i to cores
    [i*c, (i+1)*c) (Linux), so that N workers x c cores can be compared with one process on
    N*c cores. When one worker fails, the others are stopped (they would wait on its
    collectives forever) and WorkerFailure names it with the end of its output."""
    if n < 2:
        raise ValueError(f"launch_local_workers needs at least 2 workers, got {n}")
    sink = sink or sys.stderr
    configs = local_tf_configs(n)
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
    procs, relays, logs, started = [], [], [], time.perf_counter()
    seconds: list[float | None] = [None] * n
    try:
        for i, tf_config in enumerate(configs):
            child_env = {**os.environ, **(env or {}), TF_CONFIG: json.dumps(tf_config)}
            cores = None
            if cpus_per_worker:
                cores = set(range(i * cpus_per_worker, (i + 1) * cpus_per_worker)) & os.sched_getaffinity(0)
                if not cores:
                    raise UserError(f"worker {i} would get no core: {n} workers x {cpus_per_worker} cores "
                                    f"on a machine with {os.cpu_count()}")
            log = open(os.path.join(log_dir, f"worker-{i}.log"), "w") if log_dir else None
            logs.append(log)
            proc = subprocess.Popen(list(command), env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    preexec_fn=(lambda c=cores: os.sched_setaffinity(0, c)) if cores else None)
            procs.append(proc)
            relay = threading.Thread(target=_relay, args=(proc.stdout, f"[worker {i}]", sink, log), daemon=True)
            relay.start()
            relays.append(relay)
        _wait_all(procs, seconds, started, timeout)
        failed = [i for i, p in enumerate(procs) if p.returncode != 0]
        for relay in relays:
            relay.join(timeout=10)
        if failed:
            # the worker that failed first on its own (the ones stopped after it have negative codes)
            first = min(failed, key=lambda i: (procs[i].returncode < 0, seconds[i] or float("inf")))
            path = os.path.join(log_dir, f"worker-{first}.log") if log_dir else None
            tail = ""
            if path and os.path.exists(path):
                with open(path) as handle:
                    tail = "".join(handle.readlines()[-20:])
            raise WorkerFailure(first, procs[first].returncode, path, tail)
        return [round(s or 0.0, 2) for s in seconds]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            if log is not None:
                log.close()


def _wait_all(procs: list[subprocess.Popen], seconds: list[float | None], started: float,
              timeout: float | None) -> None:
    """Waits until every worker has exited, or one has failed (the rest are then terminated:
    they would block on its collectives), or ``timeout`` seconds have passed."""
    while True:
        for i, proc in enumerate(procs):
            if proc.poll() is not None and seconds[i] is None:
                seconds[i] = time.perf_counter() - started
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            return
        timed_out = timeout is not None and time.perf_counter() - started > timeout
        if timed_out or any(c not in (None, 0) for c in codes):
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.perf_counter() + 20
            for proc in procs:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.perf_counter()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if timed_out:
                raise TimeoutError(f"trainer workers did not finish within {timeout:.0f} s")
            return
        time.sleep(0.2)
