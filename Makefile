# Everything a fresh machine needs is installed into .venv by these rules.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Every package file, found recursively: a fixed list of directories missed the packages
# added later (warehouse/contract/, warehouse/render/, ...), so edits there were not installed.
SOURCES := pyproject.toml $(shell find etl warehouse sql -name '*.py' -o -name '*.sql')
DEMO ?= .demo
DEMO_REVIEWS ?= 2000

.PHONY: install demo test lint clean bench bench-full bench-stream bench-compare bench-reports bench-alternative bench-spark

$(BIN)/saewh: $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# setuptools stages the wheel in ./build and packs whatever is left there: a module
	# since removed or moved (etl/build.py became etl/build/) would be installed again.
	rm -rf build
	# The spark extra too: make test runs the Spark engine's tests (Java 17 is on CI).
	$(BIN)/python -m pip install --quiet --disable-pip-version-check '.[test,spark]'
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

# Benchmarks (README "Performance"): inputs are synthesized once into .bench/ and reused.
# bench: ~5M tokens (~45K reviews, a 1.3 GB H5), a few minutes.  bench-full: the real
# dataset's size (432,248 reviews, ~47M tokens, a 13 GB H5; needs ~45 GB free disk).
bench: install
	$(BIN)/python -m bench.run --tokens 5M --out bench/results/bench-5M.json

bench-full: install
	$(BIN)/python -m bench.run --reviews 432248 --scan-repeats 2 --groupby-repeats 2 \
		--out bench/results/bench-full.json

# Streamed export (README "Streaming"): peak RSS and time of `saewh sql` writing 160M
# generated rows in each format (and the 5M-token activations when `make bench` built
# them), beside the old materializing code on 10M rows.  Under two hours.
STREAM_WH := .bench/wh-r45455-s0
bench-stream: install
	$(BIN)/python -m bench.stream --rows 160M $(if $(wildcard $(STREAM_WH)/manifest.json),--warehouse $(STREAM_WH)) \
		--out bench/results/stream.json

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DEMO) build *.egg-info

# This tree's build against an earlier commit's, alternating on make bench's input:
# Parquet checksums (same output?) and the median build time and peak RSS, as a ratio.
# BASE: the commit before the change measured (default: before the build's restructuring).
BASE ?= ce9f81f~1
bench-compare: install
	$(BIN)/python -m bench.compare --baseline $(BASE) --tokens 5M --repeats 3 \
		--out bench/results/compare.json

# Corpus-wide questions (issue 13): the token-major access paths against the scans they
# replaced, warm and as `saewh report` processes, on make bench's 5M-token warehouse.
BENCH_WH := .bench/wh-r45455-s0
bench-reports: install
	$(BIN)/python -m bench.reports --warehouse $(BENCH_WH) --out bench/results/reports-5M.json

# The Spark engine beside the local build (README "Running on a cluster"): the demo-size
# input built with --workers 2 and with --engine spark --master local[2], alternating, as
# a ratio; Spark's task metrics from its event log; BYTE_STREAM_SPLIT against PLAIN floats.
bench-spark: install
	$(BIN)/python -m bench.spark --reviews $(DEMO_REVIEWS) --repeats 3 --out bench/results/spark.json

# The build against DuckDB's own COPY ... ORDER BY ... PARTITION_BY over numpy-exploded
# rows (issue 13's baseline), time and peak memory as ratios, on make bench's input.
bench-alternative: install
	$(BIN)/python -m bench.alternative --tokens 5M --out bench/results/alternative-5M.json
