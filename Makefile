# The two commands of the README:  `make demo`  (the main job on the bundled `tiny` preset)
#                                  `make test`  (the whole test suite; .ci/run calls exactly this)
# Both create .venv from the pinned requirements when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test venv clean mutants

$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m mmfc.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# the planted bugs of tests/mutants/ must each make the suite fail (not part of `make test`: ~2 min)
mutants: $(STAMP)
	$(BIN)/python tests/mutants/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
