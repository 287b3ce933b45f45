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

# The main job at a size that takes 11 to 21 minutes on 2 CPU cores (by machine; README): four runs of the CPU-sized `defenses` suite
# (natural, EST, ACT, HM + LGA + ICS at eta 8) under the default evaluation on 200 test queries. The other
# three runs (robust triplet, HM softhard, MDProp) add to the same report with
# `robustdml benchmark defenses --output reports/demo`. Also refreshes the README's gallery image.
DEMO_RUNS ?= natural,est,act,hm-lga-ics
demo: data
	$(BIN)/robustdml benchmark defenses --runs $(DEMO_RUNS) --output reports/demo
	cp reports/demo/figures/gallery_0_natural.png docs/gallery-natural.png

test: data
	$(BIN)/python -m pytest -q -x --durations=15

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
