# The two set-up commands of the README.  Both create .venv when it is missing, install the exact
# versions in requirements.lock and the package, then do their job.
#
#   make reproduce   run the whole default pipeline (synthetic benchmark) and print the main table
#   make test        run the test suite
#
# PYTHON picks the interpreter used to create the environment (Python 3.11).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: reproduce test env lint clean-results

env: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install -qq --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install -qq --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

reproduce: $(STAMP)
	$(BIN)/uniav check-config params.yaml
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores all reproduce_tables
	@echo
	@cat results/tables/main.md
	@echo
	@echo "All tables (Markdown, CSV, LaTeX): results/tables/ -" $$(ls results/tables/*.md | xargs -n1 basename | tr '\n' ' ')

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

lint: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --lint

clean-results:
	rm -rf results/* .snakemake/incomplete
