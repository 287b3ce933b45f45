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

# Fashion-MNIST as CI gets it: on disk, else Debian's dataset-fashion-mnist when apt-get can install it,
# else the checksum-verified download; otherwise one line saying what to do.
data: setup
	@sh scripts/get-fashion-mnist.sh $(BIN)/robustdml

# Also refreshes the README's gallery image from the report (the naturally trained run).
demo: data
	$(BIN)/robustdml benchmark defenses --output reports/demo
	cp reports/demo/figures/gallery_0_natural.png docs/gallery-natural.png

test: data
	$(BIN)/python -m pytest -q -x --durations=15

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
