VENV ?= .venv
PY := $(VENV)/bin/python
BEAM_VENV ?= .venv-beam
BEAM_PY := $(BEAM_VENV)/bin/python
SPARK_VENV ?= .venv-spark
SPARK_PY := $(SPARK_VENV)/bin/python
# Spark 4 runs on Java 17 or 21: the tests use this JDK unless JAVA_HOME is already set
SPARK_JAVA_HOME ?= $(firstword $(wildcard /usr/lib/jvm/java-17-openjdk-* /usr/lib/jvm/java-21-openjdk-*))

WORKER_VENV ?= .venv-worker
WORKER_PY := $(WORKER_VENV)/bin/python
BEAM_VERSION ?= 2.77.0

.PHONY: install install-beam install-worker install-spark install-mediapipe test test-beam test-spark test-install bench lint clean

install:            ## create .venv and install imgtool-ml with every extra: test tools, tensorboard, pyarrow (editable)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -e ".[test,bench,parquet,lint,summaries]"

install-beam:       ## create .venv-beam: imgtool + Apache Beam, without TensorFlow (Beam pins pillow<13, protobuf<7)
	test -x $(BEAM_PY) || python3 -m venv $(BEAM_VENV)
	$(BEAM_PY) -m pip install -q --upgrade "pip>=24"
	$(BEAM_PY) -m pip install -q -r requirements-beam.txt
	$(BEAM_PY) -m pip install -q --no-deps -e .

install-worker:     ## create .venv-worker: what a Beam SDK container has (apache-beam) + requirements-worker.lock, nothing else (no imgtool)
	test -x $(WORKER_PY) || python3 -m venv $(WORKER_VENV)
	$(WORKER_PY) -m pip install -q --upgrade "pip>=24"
	$(WORKER_PY) -m pip install -q "apache-beam==$(BEAM_VERSION)" -r requirements-worker.lock

install-spark:      ## create .venv-spark: imgtool + pyspark 4 (pandas<3, pyarrow), without TensorFlow (imgtool.spark)
	test -x $(SPARK_PY) || python3 -m venv $(SPARK_VENV)
	$(SPARK_PY) -m pip install -q --upgrade "pip>=24"
	# --no-compile: pyspark is ~500 MB of files; byte-compiling all of them took ~70 s of the
	# ~100 s install (warm pip cache), and Python compiles what it imports on first use anyway
	$(SPARK_PY) -m pip install -q --no-compile -r requirements-spark.txt
	$(SPARK_PY) -m pip install -q --no-deps -e .

MEDIAPIPE_VENV ?= .venv-mediapipe
MEDIAPIPE_VERSION ?= 1.2.2

install-mediapipe:  ## a separate venv with MediaPipe Tasks: the outside client the export tests run (its pins may fight ours)
	test -x $(MEDIAPIPE_VENV)/bin/python || python3 -m venv $(MEDIAPIPE_VENV)
	$(MEDIAPIPE_VENV)/bin/python -c "import mediapipe" 2>/dev/null || \
	  $(MEDIAPIPE_VENV)/bin/python -m pip install -q "mediapipe==$(MEDIAPIPE_VERSION)"

test:               ## the whole suite (real fixtures from ../shared/fixtures or $$IMGTOOL_FIXTURES)
	$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi; exit $$rc

test-beam:          ## the Beam tests (tests/beam + the golden preprocessing test) in .venv-beam; fails if it is missing
	@test -x $(BEAM_PY) || { echo "$(BEAM_PY) is missing: run make install-beam" >&2; exit 1; }
	$(BEAM_PY) -m pytest -q tests/beam tests/test_golden_preprocessing.py; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no Beam tests: that is a failure" >&2; exit 1; fi; exit $$rc

test-spark:         ## the Spark tests (tests/spark: local[2] and a standalone master+worker on 127.0.0.1) in .venv-spark
	@test -x $(SPARK_PY) || { echo "$(SPARK_PY) is missing: run make install-spark" >&2; exit 1; }
	JAVA_HOME="$${JAVA_HOME:-$(SPARK_JAVA_HOME)}" $(SPARK_PY) -m pytest -q tests/spark; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no Spark tests: that is a failure" >&2; exit 1; fi; exit $$rc

test-install:       ## build the wheel, install it without extras into a fresh venv, run --version and the quick start offline
	$(PY) -m pytest -q -m install tests/test_packaging.py; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no install test: that is a failure" >&2; exit 1; fi; exit $$rc

bench:              ## benchmarks (~7 min; BENCH_ARGS=--quick ~3 min); figures go to BENCHMARKS.md by hand, with date and machine
	$(PY) benchmarks/run.py $(BENCH_ARGS)

lint:               ## ruff (check and format, imgtool/ and tests/) and mypy (imgtool/); installed by make install
	$(PY) -m ruff check imgtool/ tests/
	$(PY) -m ruff format --check imgtool/ tests/
	$(PY) -m mypy imgtool/

clean:
	rm -rf build dist *.egg-info .pytest_cache
