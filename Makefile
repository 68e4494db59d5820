# Two commands do everything on a fresh machine:  make demo  and  make test.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
ARTIFACTS ?= artifacts
PYTEST_ARGS ?=
# Kubeflow: the pipeline image and where the pipeline writes its artifacts on the cluster.
IMAGE ?= movielens-tfx:0.1.0
PIPELINE_ROOT ?= gs://your-bucket/movielens/pipeline-root
KUBEFLOW_ARGS ?=
# The TensorFlow of the tensorflow/serving image in kubeflow/manifests/tf-serving.yaml, which
# check-serving-runtime installs (tensorflow-cpu) into a side venv; it fails when they differ.
SERVING_RUNTIME_TF ?= 2.19.1
SERVING_RUNTIME_VENV ?= .venv-serving-runtime
# default: the model the e2e tier pushed (artifacts/e2e/serving/movielens), else the demo's
SERVING_RUNTIME_MODEL ?=

.PHONY: install browser demo test test-unit test-e2e test-slow check-serving-runtime benchmark kubeflow kubeflow-local image clean

install: $(STAMP) browser

# Headless Chromium + chromedriver (Debian packages) for the browse page's browser test; a
# quick no-op where they are installed (tools/provision_browser.sh).
browser:
	@bash tools/provision_browser.sh

# Re-runs only when the pins or the set-up script change, so a second `make install` is a no-op.
$(STAMP): pyproject.toml requirements.lock tools/provision_venv.sh
	bash tools/provision_venv.sh
	$(PY) -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[test]'
	$(PY) -c "from tfx import v1; import tensorflow_transform, faiss, tensorflow_serving.apis" 2>/dev/null \
	  || { echo "[install] ERROR: the TFX stack does not import in $(VENV); see the messages above" >&2; exit 1; }
	touch $(STAMP)

# DEMO_ARGS=--keep-serving leaves the browse page's service running at the end (Ctrl-C stops it).
DEMO_ARGS ?=
demo: install
	$(PY) -m commands.cli demo --artifacts $(ARTIFACTS) $(DEMO_ARGS)

# Two tiers: the unit tier (seconds to a few minutes), then the end-to-end pipeline runs
# (marked e2e). The import-layer contract (pyproject.toml [tool.importlinter]) runs first.
# Tests marked slow (minutes each: interrupted runs, subprocess pipelines) are a third tier,
# `make test-slow`, which CI runs after `make test`.
test: install
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q --durations=15 -m "not e2e and not slow" $(PYTEST_ARGS)
	$(PY) -m pytest -q --durations=15 -m "e2e and not slow" $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest -q --durations=15 -m "not e2e and not slow" $(PYTEST_ARGS)

test-e2e: install
	$(PY) -m pytest -q --durations=15 -m "e2e and not slow" $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -q --durations=15 -m slow $(PYTEST_ARGS)

# The latest pushed model under the serving image's TensorFlow: every signature called, the
# warm-up file replayed (commands/check_serving_runtime.py; .ci/run runs it after make test).
check-serving-runtime: install
	$(PY) -m commands.check_serving_runtime --runtime-tf $(SERVING_RUNTIME_TF) --venv $(SERVING_RUNTIME_VENV) \
	  $(if $(SERVING_RUNTIME_MODEL),--model-base-path $(SERVING_RUNTIME_MODEL))

# Every number in docs/benchmarks.md comes from these; results land in benchmarks/results/*.json.
# Needs ../shared/data (the real MovieLens files); about 4 hours on 2 cores. The Evaluator comparison
# (python -m benchmarks.evaluator_bench --artifacts DIR --dataset ml-1m) runs on a finished run's artifacts.
benchmark: install
	$(PY) -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[benchmark]'
	$(PY) -m benchmarks.pipeline_bench --data ../shared/data/ml-1m --ratings ../shared/data/ml-1m/ratings-no-timestamps.csv --dataset ml-1m
	$(PY) -m benchmarks.pipeline_bench --growth ml-1m,5m,25m --repeats 3   # about 2 hours: ML-25M's shape end to end
	$(PY) -m benchmarks.beam_modes --data ../shared/data/ml-1m --ratings ../shared/data/ml-1m/ratings-no-timestamps.csv --no-peer
	$(PY) -m benchmarks.accuracy --dataset ml-100k --data ../shared/data/ml-100k --test-fraction 0.1 --seed 0
	$(PY) -m benchmarks.accuracy --dataset ml-100k --data ../shared/data/ml-100k --test-fraction 0.2 --seed 0
	$(PY) -m benchmarks.serving --model-base-path $(ARTIFACTS)/serving/movielens --modes plain batching_tuned noop --concurrency 1 16 --pairs 1
	$(PY) -m benchmarks.serving_profile --model-base-path $(ARTIFACTS)/serving/movielens
	$(PY) -m benchmarks.index_bench
	$(PY) -m benchmarks.browse_page --data ../shared/data/ml-1m --ratings ../shared/data/ml-1m/ratings-no-timestamps.csv
	$(PY) -m benchmarks.accuracy --dataset ml-1m --data ../shared/data/ml-1m --ratings ../shared/data/ml-1m/ratings-no-timestamps.csv --test-fraction 0.2 --seed 0
	$(PY) -m benchmarks.ranking --data ../shared/data/ml-100k   # EASE, two-stage, retrieval index, PureSVD, most popular
	$(PY) -m benchmarks.ranking --data ../shared/data/ml-1m --ratings ../shared/data/ml-1m/ratings-no-timestamps.csv
	$(PY) -m benchmarks.tables --write

# The KFP v2 pipeline spec (offline): artifacts/kubeflow/movielens_pipeline.{json,yaml}.
# e.g. make kubeflow IMAGE=REGISTRY/movielens-tfx:0.1.0 PIPELINE_ROOT=gs://BUCKET/movielens
#      KUBEFLOW_ARGS="--beam-arg=--runner=DataflowRunner ..."   (see kubeflow/README.md)
kubeflow: install
	$(PY) -m kubeflow.runner --image $(IMAGE) --pipeline-root $(PIPELINE_ROOT) \
	  --output $(ARTIFACTS)/kubeflow/movielens_pipeline.json $(KUBEFLOW_ARGS)

# The pipeline image built with podman and the compiled pipeline run in it, step by step, as
# the image's user (kubeflow/local_run.py, kubeflow/README.md); installs podman where missing.
PODMAN_CONF ?= $(abspath .podman/containers.conf)
kubeflow-local: install
	bash tools/provision_podman.sh $(PODMAN_CONF)
	CONTAINERS_CONF=$(PODMAN_CONF) $(PY) -m kubeflow.local_run --out $(ARTIFACTS)/kubeflow-local

# The pipeline image. Needs a reachable Docker engine; without one this fails (exit 2) rather
# than let `make image && docker push` carry on as if an image had been built.
image:
	@if docker info >/dev/null 2>&1; then \
	  docker build -f kubeflow/Dockerfile -t $(IMAGE) . ; \
	else \
	  echo "make image: no Docker engine reachable (docker info failed), so $(IMAGE) was not built." >&2; \
	  echo "  Build it where a Docker engine runs: docker build -f kubeflow/Dockerfile -t $(IMAGE) ." >&2; \
	  echo "  (see kubeflow/README.md)" >&2; \
	  exit 2; \
	fi

clean:
	rm -rf $(ARTIFACTS)
