# Two commands do everything on a fresh machine:  make demo  and  make test.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
ARTIFACTS ?= artifacts
PYTEST_ARGS ?=

.PHONY: install demo test benchmark kubeflow clean

install: $(STAMP)

# Re-runs only when the pins or the set-up script change, so a second `make install` is a no-op.
$(STAMP): pyproject.toml requirements.lock tools/provision_venv.sh
	bash tools/provision_venv.sh
	$(PY) -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[test]'
	$(PY) -c "from tfx import v1; import tensorflow_transform, faiss, tensorflow_serving.apis" 2>/dev/null \
	  || { echo "[install] ERROR: the TFX stack does not import in $(VENV); see the messages above" >&2; exit 1; }
	touch $(STAMP)

demo: install
	$(PY) -m pipeline.cli demo --artifacts $(ARTIFACTS)

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

benchmark: install
	$(PY) -m benchmarks.data_pipeline

clean:
	rm -rf $(ARTIFACTS)
