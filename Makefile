# The two commands of the README. Each sets itself up from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DATA   ?= synthetic
OUT    ?= demo-out
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch pinned in the same command: an unpinned one pulls a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0 -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

demo: $(STAMP)
	$(VENV)/bin/recvec demo --data $(DATA) --out $(OUT)

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
