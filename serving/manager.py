"""Keeps the right model versions loaded and hands them to requests.

How a version swap stays invisible to clients (TF-Serving's availability-preserving policy):
  1. the poller finds a new version directory and loads it (and warms it up) off to the side;
  2. it publishes a new *immutable* view {version -> Servable} by swapping one reference --
     requests read that reference without a lock and see either the old or the new view;
  3. only then is the old version retired: new requests can no longer acquire it, requests
     already running on it finish, and it is unloaded when its in-flight count reaches zero.
A version that fails to load never replaces a working one: the old versions stay served.

Loading follows TF-Serving's LoaderHarness: every numbered version folder the policy aspires
is loaded, complete or not (a folder whose saved_model.pb or variables/ are still on their
way fails its load); a failed load is retried up to --max_num_load_retries times, one
--load_retry_interval_micros apart, with the version LOADING in GetModelStatus meanwhile;
after the last retry it is END with the load's error, and only a new number (or removing and
re-creating the folder) tries it again. A version whose folder disappears stops retrying.

One deliberate difference, the load fallback: under a latest-N policy, each aspired version
whose load failed (retrying or given up) is stood in for by the newest older version on disk
that loads, so a server restarted with a broken newest version keeps serving the last good
one instead of nothing (TF-Serving serves nothing in that case). The failed version stays in
GetModelStatus with its error, and once it loads (a retry succeeds) the stand-in is unloaded.
A repeating failure is logged once per load attempt, and the fallback once per change, not
on every poll. Whether each model has a version to serve is reported to `on_availability`
(the server's health service says NOT_SERVING while one has none).

Version resolution and status follow TF-Serving's messages: NOT_FOUND "Servable not found for
request: Specific(name, 999)" / "Latest(name)", INVALID_ARGUMENT "Unrecognized servable
version label: x", GetModelStatus states START/LOADING/AVAILABLE/UNLOADING/END.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import math
import threading
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

import grpc
from tensorflow_serving.apis import get_model_status_pb2, model_pb2

from serving import errors
from serving.config import ModelConfig, ModelServerConfig
from serving.servable import DEFAULT_TAGS, Servable
from serving.versions import aspired_versions, scan_versions
from serving.warmup import warm_up

log = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State
#: The poller's longest sleep: it looks this often for a load retry that fell due (one that a
#: config reload scheduled while it slept, or any retry with filesystem polling off).
_WAKE_SECONDS = 0.25
Loader = Callable[[str, int, Path, tuple], Servable]
#: Called with {model name: whether it has a version to serve} whenever that may have changed.
AvailabilityListener = Callable[[Mapping[str, bool]], None]


@dataclass(frozen=True)
class ModelView:
    """What requests see of one model: loaded versions and labels. Never mutated."""

    available: Mapping[int, Servable]
    labels: Mapping[str, int]


@dataclass
class VersionRecord:
    """The GetModelStatus view of one version."""

    state: int
    error: errors.ServingError | None = None
    failures: int = 0
    retry_at: float | None = None   # monotonic time of the next load attempt, while retrying


@dataclass
class _Model:
    config: ModelConfig
    records: dict[int, VersionRecord] = field(default_factory=dict)
    base_path_missing_logged: bool = False
    on_disk: dict[int, Path] = field(default_factory=dict)  # the last scan's version folders
    #: What the last fallback warning said: it is logged again only when that changes.
    fallback_logged: tuple | None = None


def _default_loader(name: str, version: int, path: Path, tags: tuple) -> Servable:
    return Servable.load(name, version, path, tags)


def _load_error(name: str, version: int, path: Path, error: Exception) -> errors.ServingError:
    """The status GetModelStatus reports for a failed load, coded as TF-Serving codes it
    (a missing SavedModel file is NOT_FOUND)."""
    if isinstance(error, errors.ServingError):
        return error
    code = grpc.StatusCode.NOT_FOUND if isinstance(error, FileNotFoundError) else grpc.StatusCode.UNKNOWN
    return errors.ServingError(code, f"Failed to load servable version {version} of {name} at {path}: {error}")


class ModelManager:
    """Loads, serves and unloads model versions for a ModelServerConfig."""

    def __init__(self, config: ModelServerConfig, *, poll_wait_seconds: float = 1.0, enable_warmup: bool = True,
                 warmup_iterations: int = 1, tags: tuple[str, ...] = DEFAULT_TAGS, max_num_load_retries: int = 5,
                 load_retry_interval_seconds: float = 60.0, loader: Loader = _default_loader,
                 on_availability: AvailabilityListener | None = None):
        self._poll_wait = poll_wait_seconds
        self._retry_interval = max(0.0, load_retry_interval_seconds)  # negative: no wait, as TF-Serving
        self._enable_warmup = enable_warmup
        self._warmup_iterations = warmup_iterations
        self._tags = tuple(tags)
        self._max_load_attempts = 1 + max(0, max_num_load_retries)
        self._loader = loader
        self._on_availability = on_availability
        self._lock = threading.RLock()      # guards _models and writes of _views
        self._poll_lock = threading.Lock()  # one filesystem sync at a time
        self._models: dict[str, _Model] = {}
        self._views: Mapping[str, ModelView] = types.MappingProxyType({})
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._unloaders: list[threading.Thread] = []
        self._apply_config(config)

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        """Loads what is on disk now (blocking, like TF-Serving's startup), then polls: for new
        versions every poll_wait_seconds, and for due load retries (even with polling off)."""
        self.poll_once()
        self._poller = threading.Thread(target=self._poll_loop, name="model-poller", daemon=True)
        self._poller.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stops polling and unloads every version once its running requests are done."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout)
        with self._lock:
            servables = [s for view in self._views.values() for s in view.available.values()]
            self._views = types.MappingProxyType({})
        for servable in servables:
            self._retire(servable)
        for thread in list(self._unloaders):
            thread.join(timeout)

    def _poll_loop(self) -> None:
        next_scan = time.monotonic() + self._poll_wait if self._poll_wait > 0 else math.inf
        while True:
            retry = self._next_retry()
            due = min(next_scan, retry if retry is not None else math.inf)
            if self._stop.wait(min(_WAKE_SECONDS, max(0.0, due - time.monotonic()))):
                return
            now = time.monotonic()
            rescan = now >= next_scan
            if not rescan and (retry is None or now < retry):
                continue
            try:
                with self._poll_lock:
                    self._sync_all(rescan=rescan)
            except Exception:  # noqa: BLE001 - a poll failure must not kill the poller
                log.exception("model version poll failed")
            if rescan:
                next_scan = time.monotonic() + self._poll_wait

    def _next_retry(self) -> float | None:
        with self._lock:
            due = [r.retry_at for m in self._models.values() for r in m.records.values() if r.retry_at is not None]
        return min(due) if due else None

    # --- configuration ----------------------------------------------------------------
    def _apply_config(self, config: ModelServerConfig) -> list[str]:
        """Replaces the model list; returns the names of models that were dropped."""
        with self._lock:
            wanted = {m.name: m for m in config.model_config_list.config}
            dropped = [name for name in self._models if name not in wanted]
            for name, model_config in wanted.items():
                if name in self._models:
                    self._models[name].config = model_config
                else:
                    self._models[name] = _Model(config=model_config)
            return dropped

    def reload_config(self, config: ModelServerConfig) -> None:
        """HandleReloadConfigRequest / a changed --model_config_file: new models load, removed
        models unload, label and policy changes apply. Blocks until loads are done."""
        dropped = self._apply_config(config)
        with self._poll_lock:
            for name in dropped:
                with self._lock:
                    model = self._models.pop(name)
                    view = self._views.get(name)
                    views = dict(self._views)
                    views.pop(name, None)
                    self._views = types.MappingProxyType(views)
                if view is not None:
                    for servable in view.available.values():
                        self._mark(model, servable.version, State.UNLOADING)
                        self._retire(servable)
            self._sync_all()

    @property
    def model_names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    # --- polling ----------------------------------------------------------------------
    def poll_once(self) -> None:
        with self._poll_lock:
            self._sync_all()

    def _sync_all(self, rescan: bool = True) -> None:
        with self._lock:
            names = list(self._models)
        for name in names:
            self._sync_model(name, rescan)

    def _sync_model(self, name: str, rescan: bool = True) -> None:
        """rescan=False (a load retry with polling off) reuses the last scan's folders."""
        with self._lock:
            model = self._models.get(name)
        if model is None:
            return
        config = model.config
        base_path = Path(config.base_path)
        on_disk = scan_versions(base_path) if rescan else dict(model.on_disk)
        if on_disk is None:
            if not model.base_path_missing_logged:
                log.error("File system storage path source: could not find base path %s for servable %s",
                          base_path, name)
                model.base_path_missing_logged = True
            self._publish(name, None, config)  # labels may have changed; versions stay as they are
            return
        model.base_path_missing_logged = False
        model.on_disk = on_disk
        aspired = aspired_versions(config.model_version_policy, on_disk)
        current = self._views.get(name)
        loaded = dict(current.available) if current else {}
        self._forget_failures(model, aspired)

        failed = False
        for version in sorted(aspired - set(loaded)):
            if not self._due(model, version):
                failed = True
                continue
            servable = self._load(model, name, version, on_disk[version])
            if servable is not None:
                loaded[version] = servable
                self._publish(name, loaded, config)  # live as soon as it is ready
            else:
                failed = True

        wanted = {v for v in loaded if v in aspired} | self._stand_ins(model, name, aspired, loaded, on_disk)
        # Unload versions no longer wanted -- but never the last ones if nothing wanted loaded.
        keep = {v: s for v, s in loaded.items() if v in wanted}
        if not keep and loaded and aspired:
            keep = loaded
        if failed and set(keep) != aspired:
            self._log_fallback(model, name, aspired, keep)
        else:
            model.fallback_logged = None
        retiring = [s for v, s in loaded.items() if v not in keep]
        self._publish(name, keep, config)
        for servable in retiring:
            self._mark(model, servable.version, State.UNLOADING)
            self._retire(servable, model)

    def _stand_ins(self, model: _Model, name: str, aspired: set[int], loaded: dict[int, Servable],
                   on_disk: Mapping[int, Path]) -> set[int]:
        """The load fallback: under a latest-N policy, one older version that loads for each
        aspired version that failed to load, newest first (loaded here as needed, into
        `loaded`). The all and specific policies name their versions exactly: no stand-ins."""
        if model.config.model_version_policy.WhichOneof("policy_choice") not in (None, "latest"):
            return set()
        with self._lock:
            missing = sum(1 for v in aspired if v not in loaded and v in model.records
                          and model.records[v].failures > 0)
        chosen: set[int] = set()
        oldest_aspired = min(aspired, default=0)
        for version in sorted((v for v in on_disk if v < oldest_aspired), reverse=True):
            if len(chosen) >= missing:
                break
            if version not in loaded:
                if not self._due(model, version):
                    continue
                servable = self._load(model, name, version, on_disk[version])
                if servable is None:
                    continue
                loaded[version] = servable
                self._publish(name, loaded, model.config)
            chosen.add(version)
        return chosen

    def _log_fallback(self, model: _Model, name: str, aspired: set[int], serving: Mapping[int, Servable]) -> None:
        """Says once, until what is served changes, that aspired versions failed and what is
        served instead (the poller would otherwise repeat it every poll)."""
        said = (tuple(sorted(aspired)), tuple(sorted(serving)))
        if said == model.fallback_logged:
            return
        model.fallback_logged = said
        if serving:
            log.warning("Aspired version(s) %s of %s could not be loaded; serving version(s) %s instead",
                        sorted(aspired), name, sorted(serving))
        else:
            log.error("No version of %s could be loaded (aspired %s): the model is not available",
                      name, sorted(aspired))

    def _due(self, model: _Model, version: int) -> bool:
        """Whether to try loading `version` now: never tried, or its retry is due. False once it
        failed --max_num_load_retries + 1 times (it needs a new number or a new folder)."""
        with self._lock:
            record = model.records.get(version)
            if record is None or record.failures == 0:
                return True
            if record.failures >= self._max_load_attempts:
                return False
            return record.retry_at is not None and time.monotonic() >= record.retry_at

    def _forget_failures(self, model: _Model, aspired: set[int]) -> None:
        """A failed or retrying version that is no longer aspired (its folder went away, or the
        policy moved on) stops retrying; a folder re-created later is a fresh start."""
        with self._lock:
            for version in [v for v, r in model.records.items() if r.failures and v not in aspired]:
                record = model.records[version]
                if record.retry_at is not None:
                    log.info("Retrying of Loading servable: {name: %s version: %d} was cancelled.",
                             model.config.name, version)
                del model.records[version]

    def _load(self, model: _Model, name: str, version: int, path: Path) -> Servable | None:
        with self._lock:
            record = model.records.get(version)
            failures = record.failures if record is not None else 0
            model.records[version] = VersionRecord(State.LOADING, failures=failures)
        log.info("Loading servable version {name: %s version: %d} from %s", name, version, path)
        try:
            servable = self._loader(name, version, path, self._tags)
            if self._enable_warmup:
                warm_up(servable, self._warmup_iterations)
        except Exception as error:  # noqa: BLE001 - any load failure is reported via status
            failure = _load_error(name, version, path, error)
            attempts = failures + 1
            retrying = attempts < self._max_load_attempts
            with self._lock:
                model.records[version] = VersionRecord(
                    State.LOADING if retrying else State.END, failure, attempts,
                    time.monotonic() + self._retry_interval if retrying else None)
            log.error("Loading servable version {name: %s version: %d} failed (attempt %d of %d): %s",
                      name, version, attempts, self._max_load_attempts, failure.message)
            if retrying:
                log.info("Retrying of Loading servable: {name: %s version: %d} retry: %d in %.1f s",
                         name, version, attempts, self._retry_interval)
            else:
                log.error("Retrying of Loading servable: {name: %s version: %d} exhausted max_num_load_retries: %d",
                          name, version, self._max_load_attempts - 1)
            return None
        self._mark(model, version, State.AVAILABLE)
        log.info("Successfully loaded servable version {name: %s version: %d}", name, version)
        return servable

    def _publish(self, name: str, available: Mapping[int, Servable] | None, config: ModelConfig) -> None:
        """Swaps in a new immutable view of `name` (keeps the versions when `available` is None)."""
        with self._lock:
            if name not in self._models:
                return
            previous = self._views.get(name)
            versions = dict(previous.available) if available is None and previous else dict(available or {})
            view = ModelView(types.MappingProxyType(versions), types.MappingProxyType(dict(config.version_labels)))
            views = dict(self._views)
            views[name] = view
            self._views = types.MappingProxyType(views)
        self.report_availability()

    def report_availability(self) -> None:
        """Tells `on_availability` which models have a version to serve now."""
        if self._on_availability is None:
            return
        with self._lock:
            status = {name: bool(name in self._views and self._views[name].available) for name in self._models}
        self._on_availability(status)

    def _mark(self, model: _Model, version: int, state: int) -> None:
        with self._lock:
            record = model.records.setdefault(version, VersionRecord(state))
            record.state = state
            if state == State.AVAILABLE:
                record.error = None
                record.failures = 0
                record.retry_at = None

    def _retire(self, servable: Servable, model: _Model | None = None) -> None:
        """No new requests; unload in the background once running ones are done."""
        servable.retire()

        def finish() -> None:
            servable.wait_idle()
            servable.unload()
            gc.collect()
            if model is not None:
                self._mark(model, servable.version, State.END)
            log.info("Unloaded servable version {name: %s version: %d}", servable.name, servable.version)

        thread = threading.Thread(target=finish, name=f"unload-{servable.name}-{servable.version}", daemon=True)
        with self._lock:
            self._unloaders = [t for t in self._unloaders if t.is_alive()] + [thread]
        thread.start()

    # --- requests ---------------------------------------------------------------------
    def resolve(self, spec: model_pb2.ModelSpec) -> Servable:
        """The servable a ModelSpec names, or TF-Serving's NOT_FOUND / INVALID_ARGUMENT."""
        name = spec.name
        view = self._views.get(name)
        choice = spec.WhichOneof("version_choice")
        if choice == "version_label":
            label = spec.version_label
            if view is None or label not in view.labels:
                raise errors.invalid_argument(f"Unrecognized servable version label: {label}")
            version = view.labels[label]
        elif choice == "version":
            version = spec.version.value
        else:
            if view is None or not view.available:
                raise errors.not_found(f"Servable not found for request: Latest({name})")
            return view.available[max(view.available)]
        servable = view.available.get(version) if view is not None else None
        if servable is None:
            raise errors.not_found(f"Servable not found for request: Specific({name}, {version})")
        return servable

    @contextlib.contextmanager
    def servable(self, spec: model_pb2.ModelSpec) -> Iterator[Servable]:
        """Holds the named version for the duration of one request (it cannot be unloaded)."""
        for _ in range(10):
            servable = self.resolve(spec)
            if servable.try_acquire():
                break
            # Retired between reading the view and acquiring: the next view no longer has it.
        else:
            raise errors.ServingError(grpc.StatusCode.UNAVAILABLE, f"Model {spec.name} is being reloaded; retry")
        try:
            yield servable
        finally:
            servable.release()

    def version_status(self, spec: model_pb2.ModelSpec) -> list[tuple[int, VersionRecord]]:
        """(version, record) pairs for GetModelStatus."""
        name = spec.name
        with self._lock:
            model = self._models.get(name)
            records = {v: VersionRecord(r.state, r.error, r.failures) for v, r in model.records.items()} if model else {}
        choice = spec.WhichOneof("version_choice")
        if choice == "version_label":
            view = self._views.get(name)
            if view is None or spec.version_label not in view.labels:
                raise errors.invalid_argument(f"Unrecognized servable version label: {spec.version_label}")
            version = view.labels[spec.version_label]
            choice = "version"
        else:
            version = spec.version.value
        if choice == "version":
            if version not in records:
                raise errors.not_found(f"Could not find version {version} of model {name}")
            return [(version, records[version])]
        if not records:
            raise errors.not_found(f"Could not find any versions of model {name}")
        return sorted(records.items())

    def available_versions(self, name: str) -> list[int]:
        view = self._views.get(name)
        return sorted(view.available) if view else []
