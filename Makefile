# Set-up and the two everyday commands. `make demo` and `make test` create .venv as needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

# torch first, pinned to the CPU build available here; then the project (editable) and its test extras.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The CPU demo (ecgexp/conf/experiment/demo.yaml): a rich bar on a terminal, else a line per
# epoch with the ETA (ecgexp/progress.py); then the val and test metrics and the run folder.
demo: $(STAMP)
	@echo "Training the demo: 4 epochs of the small network on 1000 synthetic exams, under a minute on 2 idle CPU cores (a few minutes on a busy machine)"
	$(BIN)/ecgexp experiment=demo

# The documentation site first (mkdocs.yml; a broken link, anchor or API reference fails it),
# into the ignored site/. Then two pytest-xdist workers, one per core, each computing with one
# thread (tests/conftest.py); whole test files go to one worker, so that module fixtures are
# made once, the longest files first (tests/conftest.py LONGEST_FIRST).
test: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site
	WANDB_MODE=offline $(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

# The benchmark suite (ecgexp/conf/bench.yaml): a table of figures against their baselines,
# saved to benchmarks/results/<date>-<host>.json. About 27 to 32 minutes on 2 cores (the suite of 2026-12-07 took 967 s and 1117 s; backbones and probe, added on 2026-12-08, take 10 to 11 minutes and 20 s more).
bench: $(STAMP)
	$(BIN)/ecgexp-bench

clean:
	rm -rf $(VENV) outputs data site
