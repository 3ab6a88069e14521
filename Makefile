# The course's two entry points; each sets up what is missing first (scripts/setup.sh reuses an
# up-to-date .venv and installs only what differs from the pins), so they work on a fresh clone.
#
#   make course            execute every notebook headless and print a table
#   make test              the whole test suite (what CI runs)
#   make setup             only the environment (.venv, packages, the Jupyter kernel)
#   make lab               set up, then start JupyterLab on the notebooks
#
# Extra arguments: make course ARGS="--only 00,03"   make test ARGS="-m 'not notebook'"
# Without make, the same: bash scripts/course.sh [ARGS], bash scripts/test.sh [ARGS].
.PHONY: course test setup lab

course:
	@bash scripts/course.sh $(ARGS)

test:
	@bash scripts/test.sh $(ARGS)

setup:
	@bash scripts/setup.sh

lab: setup
	.venv/bin/jupyter lab notebooks/
