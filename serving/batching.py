"""`--enable_batching`: concurrent requests to one signature are merged into one model run.

Why: a model run has a fixed cost per call (TensorFlow's function-call overhead, the lookups)
that a 1-pair request pays in full; under concurrency, merging requests pays it once per batch.
This follows TF-Serving's BatchingSession (tensorflow_serving/batching/batching_session.cc)
over TF's shared batch scheduler, for what a client can observe:

  * one queue per signature and set of input aliases (upstream: per TensorSignature, the
    input and output tensor names of a Session::Run);
  * a task is one request's inputs; every input needs a 0th (batch) dimension of the same
    size, else INVALID_ARGUMENT with upstream's wording ("Batching Run() input tensors must
    have equal 0th-dimension size", "... at least one dimension");
  * a task larger than max_batch_size is refused: INVALID_ARGUMENT "Task size N is larger
    than maximum input batch size M" (no large-batch splitting);
  * tasks join the open batch while it has room; a task that does not fit closes it and opens
    the next. A batch is run when it is full, or when batch_timeout_micros have passed since
    it was opened (0: as soon as a batch thread is free, with whatever has queued meanwhile);
  * at most max_enqueued_batches batches wait (open or closed, not yet running): a task that
    would need one more is refused with UNAVAILABLE "The batch scheduling queue to which this
    task was submitted is full", which clients retry;
  * inputs are concatenated along dimension 0 and the batch is padded up to the next
    allowed_batch_sizes entry with copies of the first row of the last task, as upstream; the
    model runs once and every output is split back by task sizes (padding dropped). An output
    without the batch's 0th dimension fails the batch with SplitOutputTensors' FAILED_PRECONDITION
    ("Batched output tensor has 0 dimensions", "... 0th dimension does not equal the sum ...");
  * tasks whose inputs differ beyond dimension 0 fail the batch with FAILED_PRECONDITION
    unless pad_variable_length_inputs, which pads every input to the batch's largest shape
    with the tensor's own first element (batching_util.cc AddPadding / PadTensor; an empty
    tensor or one of rank above 6 cannot be padded: INVALID_ARGUMENT, upstream's wording);
  * an error of the run fails every task of the batch with that error;
  * num_batch_threads threads per queue run batches.

A request's inputs without a common 0th dimension (a scalar, or sizes that differ) are
refused as upstream's ComputeTensorBatchSize refuses them (INVALID_ARGUMENT), not run
unbatched: tensorflow_model_server with --enable_batching answers such a request that way.

One deliberate difference: a request with an empty batch (0 rows) is run on its own, not
queued: it adds nothing to a batch, and the model server answers an empty batch the graph
cannot run with empty outputs (serving.servable), which a merged run could not do.

Cost per request: no thread per request; a task is queued under one Condition and a batch
thread is woken only when the task changes what it may do (a new batch, a full one, or
batch_timeout_micros 0). A request's gRPC/REST worker waits while its batch forms, so with
--enable_batching the worker pools default to at least 64 threads (serving.options).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Mapping

import numpy as np

from serving import errors
from serving.batching_parameters import BatchingParameters

Inputs = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]
RunBatch = Callable[[Inputs], Outputs]


class _Task:
    __slots__ = ("inputs", "size", "done", "outputs", "error")

    def __init__(self, inputs: Inputs, size: int):
        self.inputs = inputs
        self.size = size
        self.done = threading.Event()
        self.outputs: Outputs | None = None
        self.error: BaseException | None = None


class _Batch:
    __slots__ = ("tasks", "size", "opened")

    def __init__(self) -> None:
        self.tasks: list[_Task] = []
        self.size = 0
        self.opened = time.monotonic()


def task_size(inputs: Inputs) -> int:
    """The common 0th-dimension size of a request's inputs (ComputeTensorBatchSize)."""
    if not inputs:
        raise errors.invalid_argument("Batching Run() must have at least one input tensor")
    sizes = set()
    for value in inputs.values():
        if np.ndim(value) == 0:
            raise errors.invalid_argument("Batching Run() input tensors must have at least one dimension")
        sizes.add(np.shape(value)[0])
    if len(sizes) != 1:
        raise errors.invalid_argument("Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop()


def _pad_to(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` grown to ``shape`` beyond dimension 0, filled with its first element."""
    if value.shape[1:] == shape:
        return value
    if value.size == 0:
        raise errors.invalid_argument("Got empty tensor in batch of non-empty tensors.")
    if not 1 <= value.ndim <= 6:  # upstream pads with Eigen for ranks 1 to 6 only
        raise errors.invalid_argument("Only tensors with rank from 1 to 6 can be padded.")
    padded = np.full((value.shape[0], *shape), value.reshape(-1)[0], dtype=value.dtype)
    padded[tuple(slice(0, d) for d in value.shape)] = value
    return padded


def merge_inputs(tasks: list[_Task], padded_size: int, pad_variable_length: bool) -> dict[str, np.ndarray]:
    """Every task's inputs concatenated along dimension 0, plus rows up to ``padded_size``
    (copies of the last task's first row)."""
    total = sum(task.size for task in tasks)
    merged = {}
    for alias in tasks[0].inputs:
        values = [np.asarray(task.inputs[alias]) for task in tasks]
        inner = {v.shape[1:] for v in values}
        if len(inner) > 1:
            if not pad_variable_length:
                raise errors.failed_precondition(
                    f"Tensors with name '{alias}' from different tasks have different shapes and padding is turned "
                    f"off. Set pad_variable_length_inputs to true, or ensure that all tensors with the same name "
                    f"have equal dimensions starting with the first dim.")
            if len({len(dims) for dims in inner}) > 1:  # upstream: the concat of the padded tensors fails
                raise errors.internal(f"Tensor concat operation failed: tensors with name '{alias}' from different "
                                      f"tasks have different ranks")
            target = tuple(max(dims) for dims in zip(*inner))
            values = [_pad_to(v, target) for v in values]
        if padded_size > total:
            values.append(np.repeat(values[-1][:1], padded_size - total, axis=0))
        merged[alias] = values[0] if len(values) == 1 else np.concatenate(values)
    return merged


class BatchScheduler:
    """One queue of tasks and its batch threads (upstream: a BasicBatchScheduler)."""

    def __init__(self, parameters: BatchingParameters, run: RunBatch, name: str):
        self._parameters = parameters
        self._run = run
        self._ready = threading.Condition()
        self._batches: deque[_Batch] = deque()
        self._stopping = False
        self._no_timeout = parameters.batch_timeout_micros == 0
        self._threads = [threading.Thread(target=self._work, name=f"batch-{name}-{i}", daemon=True)
                         for i in range(parameters.threads)]
        for thread in self._threads:
            thread.start()

    # --- the request's side ------------------------------------------------------------
    def run(self, inputs: Inputs, size: int) -> Outputs:
        """Queues one task and blocks until its batch has run; its own rows of every output."""
        limit = self._parameters.max_batch_size
        if size > limit:
            raise errors.invalid_argument(f"Task size {size} is larger than maximum input batch size {limit}")
        task = _Task(inputs, size)
        with self._ready:
            if self._stopping:
                raise errors.unavailable("The batch scheduler is stopping")
            open_batch = self._batches[-1] if self._batches else None
            opened = open_batch is None or open_batch.size + size > limit
            if opened:
                if len(self._batches) >= self._parameters.max_enqueued_batches:
                    raise errors.unavailable("The batch scheduling queue to which this task was submitted is full")
                open_batch = _Batch()
                self._batches.append(open_batch)
            open_batch.tasks.append(task)
            open_batch.size += size
            # Wake a batch thread only when this task changes what it may do: a new batch (runnable
            # now with timeout 0, or closes the one before it, or starts a timeout) or a full one.
            # A task that joins a batch whose timeout is running need not wake anyone.
            if opened or open_batch.size >= limit or self._no_timeout:
                self._ready.notify()
        task.done.wait()
        if task.error is not None:
            raise task.error
        assert task.outputs is not None
        return task.outputs

    # --- the batch threads ----------------------------------------------------------------
    def _next_batch(self) -> _Batch | None:
        """The oldest batch once it may run (closed, full, or its timeout passed); None when stopping."""
        timeout = self._parameters.batch_timeout_seconds
        with self._ready:
            while True:
                if self._batches:
                    first = self._batches[0]
                    wait = first.opened + timeout - time.monotonic()
                    if (len(self._batches) > 1 or first.size >= self._parameters.max_batch_size or wait <= 0
                            or self._stopping):
                        batch = self._batches.popleft()
                        if self._batches:  # the next batch's timeout is another free thread's to watch
                            self._ready.notify()
                        return batch
                    self._ready.wait(wait)
                elif self._stopping:
                    return None
                else:
                    self._ready.wait()

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._process(batch)

    def _process(self, batch: _Batch) -> None:
        tasks = batch.tasks
        padded = self._parameters.padded_size(batch.size)
        try:
            merged = merge_inputs(tasks, padded, self._parameters.pad_variable_length_inputs)
            outputs = self._run(merged)
            for value in outputs.values():  # SplitOutputTensors' checks and wording
                if np.ndim(value) == 0:
                    raise errors.failed_precondition("Batched output tensor has 0 dimensions")
                if np.shape(value)[0] != padded:
                    raise errors.failed_precondition(
                        "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension sizes "
                        "of the input tensors")
            start = 0
            for task in tasks:
                task.outputs = {alias: value[start:start + task.size] for alias, value in outputs.items()}
                start += task.size
        except BaseException as error:  # every task of the batch gets the batch's error
            for task in tasks:
                task.error = error
        finally:
            for task in tasks:
                task.done.set()

    def stop(self) -> None:
        """Runs what is queued, then ends the batch threads."""
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join()


class Batcher:
    """A model version's batch schedulers, one per (signature, input aliases), made on first use."""

    def __init__(self, parameters: BatchingParameters, name: str):
        self.parameters = parameters
        self._name = name
        self._lock = threading.Lock()
        self._schedulers: dict[tuple[str, tuple[str, ...]], BatchScheduler] = {}
        self._stopped = False

    def run(self, signature: str, inputs: Inputs, run: RunBatch) -> Outputs:
        """``run(inputs)``, batched with other requests to the same signature and aliases."""
        size = task_size(inputs)
        if size == 0:  # see the module docstring
            return run(inputs)
        key = (signature, tuple(sorted(inputs)))
        scheduler = self._schedulers.get(key)
        if scheduler is None:
            with self._lock:
                if self._stopped:
                    raise errors.unavailable("The batch scheduler is stopping")
                scheduler = self._schedulers.get(key)
                if scheduler is None:
                    scheduler = BatchScheduler(self.parameters, run, f"{self._name}-{signature}")
                    self._schedulers[key] = scheduler
        return scheduler.run(inputs, size)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            schedulers = list(self._schedulers.values())
        for scheduler in schedulers:
            scheduler.stop()
