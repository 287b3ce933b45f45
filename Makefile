# The two commands that do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup data demo test test-fast bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# Fashion-MNIST: Debian's dataset-fashion-mnist, ./data/fashion-mnist, or a download when online.
data: setup
	$(BIN)/robustdml data fashion-mnist

# Also refreshes the README's gallery image from the report (the naturally trained run).
demo: data
	$(BIN)/robustdml benchmark defenses --output reports/demo
	cp reports/demo/figures/gallery_0_natural.png docs/gallery-natural.png

test: setup
	$(BIN)/python -m pytest -q -x --durations=15

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
