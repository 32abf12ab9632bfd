# Everything a fresh machine needs is installed into .venv by these rules.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCES := pyproject.toml $(wildcard etl/*.py warehouse/*.py sql/*.sql sql/*/*.sql)
DEMO ?= .demo
DEMO_REVIEWS ?= 2000

.PHONY: install demo test lint clean

$(BIN)/saewh: $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check '.[test]'
	touch $@

install: $(BIN)/saewh

demo: install
	$(BIN)/saewh synth --out $(DEMO)/inputs --reviews $(DEMO_REVIEWS) --seed 0
	$(BIN)/saewh build --h5 $(DEMO)/inputs/sae_features.h5 --npz $(DEMO)/inputs/metadata.npz \
		--warehouse $(DEMO)/warehouse --workers 2 --replace
	$(BIN)/saewh report top-k --feature 16751 --k 10 --warehouse $(DEMO)/warehouse

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DEMO) build *.egg-info
