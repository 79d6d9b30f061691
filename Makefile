# The two commands README promises for a fresh machine:
#   make demo   set up (offline), deploy the compose stack on the embedded default model, verify it
#   make test   set up, then run every test tier (unit, integration, e2e)
PYTEST_ARGS ?=
.PHONY: setup demo test lint

setup:
	bash tests/setup.sh

demo: setup
	bash compose/demo.sh

test: setup
	.venv/bin/pytest -m "unit or integration or e2e" $(PYTEST_ARGS)

lint:
	.venv/bin/ruff check healthchecks tests pyinfra
	.venv/bin/mypy
	cd pyinfra && ../.venv/bin/mypy --ignore-missing-imports deploy.py gik_ops.py gik_settings.py inventory.py
	.venv/bin/ansible-lint --profile production --offline
