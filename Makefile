# Two entry points (see README): `make run ARGS="..."` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch is installed first so that no dependency pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup run test lint clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

run: setup
	$(VENV)/bin/lipdub $(ARGS)

lint: setup
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest

clean:
	rm -rf $(VENV) build *.egg-info

# The Blender add-on, self-contained (plugin/blender + plugin/core): dist/lipdub_blender.zip.
.PHONY: plugin-zip
plugin-zip:
	python3 plugin/build_blender_zip.py
