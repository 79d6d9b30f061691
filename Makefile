# The two commands README promises for a fresh machine:
#   make demo   set up (offline), deploy the compose stack on the embedded default model, verify it
#   make test   set up, then run every test tier (unit, integration, e2e)
PYTEST_ARGS ?=
.PHONY: setup demo test lint

setup:
	bash tests/setup.sh

demo: setup
	bash compose/demo.sh

# Tests run on PYTEST_WORKERS processes (pytest-xdist) in units of work that tests/conftest.py names (a module,
# its module fixtures such as the container lab built once, or one long self-contained test), longest first
# (its pytest_xdist_make_scheduler: xdist's loadscope scheduler with those units as scopes).
# The engines and Ansible runs wait on I/O (SSH, apt, container start-up) much of the time; 2 workers use that.
PYTEST_WORKERS ?= 2

test: setup
	.venv/bin/pytest -m "unit or integration or e2e" -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder \
		$(PYTEST_ARGS)

lint:
	.venv/bin/ruff check healthchecks tests pyinfra
	.venv/bin/mypy
	cd pyinfra && ../.venv/bin/mypy --ignore-missing-imports deploy.py gik_ops.py gik_settings.py inventory.py
	.venv/bin/ansible-lint --profile production --offline
