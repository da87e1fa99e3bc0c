# Two commands, as root on a fresh Debian 12 machine: `make run` and `make test`.
# Both install what is missing first (scripts/setup.sh is idempotent).
.PHONY: run test setup
ARGS ?=

setup:
	@scripts/setup.sh

run: setup
	./xdpscope $(ARGS)

test: setup
	.venv/bin/python -m pytest -ra --durations=15 tests $(PYTEST_ARGS)
