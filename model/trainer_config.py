"""The custom_config keys the Trainer's `run_fn` (model.trainer) reads, beyond its hyperparameters.

Why its own module: the Trainer component (components.trainer_component), which fills them in,
and the pipeline wiring (pipeline.pipeline) both need the names without importing TensorFlow's
training code, and run_fn must not import the TFX component shells above it.
"""

#: The catalogue artifact's folder, which components.trainer_component passes to run_fn.
CATALOGUE_URI_CONFIG = "catalogue_uri"
#: How many local worker processes train (model.trainer.run_fn).
WORKERS_CONFIG = "workers"
#: With WORKERS_CONFIG > 1, pin each local worker to this many cores.
CPUS_PER_WORKER_CONFIG = "cpus_per_worker"
