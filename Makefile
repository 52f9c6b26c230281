VENV ?= .venv
PY := $(VENV)/bin/python
BEAM_VENV ?= .venv-beam
BEAM_PY := $(BEAM_VENV)/bin/python

.PHONY: install install-beam install-mediapipe test test-beam test-install bench lint clean

install:            ## create .venv and install imgtool-ml with every extra: test tools, tensorboard, pyarrow (editable)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -e ".[test,bench,parquet,lint,summaries]"

install-beam:       ## create .venv-beam: imgtool + Apache Beam, without TensorFlow (Beam pins pillow<13, protobuf<7)
	test -x $(BEAM_PY) || python3 -m venv $(BEAM_VENV)
	$(BEAM_PY) -m pip install -q --upgrade "pip>=24"
	$(BEAM_PY) -m pip install -q -r requirements-beam.txt
	$(BEAM_PY) -m pip install -q --no-deps -e .

MEDIAPIPE_VENV ?= .venv-mediapipe
MEDIAPIPE_VERSION ?= 1.2.2

install-mediapipe:  ## a separate venv with MediaPipe Tasks: the outside client the export tests run (its pins may fight ours)
	test -x $(MEDIAPIPE_VENV)/bin/python || python3 -m venv $(MEDIAPIPE_VENV)
	$(MEDIAPIPE_VENV)/bin/python -c "import mediapipe" 2>/dev/null || \
	  $(MEDIAPIPE_VENV)/bin/python -m pip install -q "mediapipe==$(MEDIAPIPE_VERSION)"

test:               ## the whole suite (real fixtures from ../shared/fixtures or $$IMGTOOL_FIXTURES)
	$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi; exit $$rc

test-beam:          ## the Beam tests (tests/beam) in .venv-beam; fails if it is missing
	@test -x $(BEAM_PY) || { echo "$(BEAM_PY) is missing: run make install-beam" >&2; exit 1; }
	$(BEAM_PY) -m pytest -q tests/beam; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no Beam tests: that is a failure" >&2; exit 1; fi; exit $$rc

test-install:       ## build the wheel, install it without extras into a fresh venv, run --version and the quick start offline
	$(PY) -m pytest -q -m install tests/test_packaging.py; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no install test: that is a failure" >&2; exit 1; fi; exit $$rc

bench:              ## benchmarks (~7 min; BENCH_ARGS=--quick ~3 min); figures go to BENCHMARKS.md by hand, with date and machine
	$(PY) benchmarks/run.py $(BENCH_ARGS)

lint:               ## ruff (imgtool/ and tests/) and mypy (imgtool/); both installed by make install
	$(PY) -m ruff check imgtool/ tests/
	$(PY) -m mypy imgtool/

clean:
	rm -rf build dist *.egg-info .pytest_cache
