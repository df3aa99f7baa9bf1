# `make app` and `make test` each do the whole set-up on a fresh machine first (scripts/setup.sh).
.PHONY: setup setup-serving app test smoke cpu-demo bench
PY := .venv/bin/python

setup:
	bash scripts/setup.sh

app: setup
	.venv/bin/streamlit run app.py

# llama.cpp's converter and server as well (built once, minutes): the export and serving tests use them.
setup-serving: setup
	bash scripts/install_llama_cpp.sh

# Lint and format first (seconds), then the suite.
test: setup-serving
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	$(PY) -m pytest -q

smoke: setup
	$(PY) train_adapter.py --preset smoke --output-dir adapters/smoke --overwrite

cpu-demo: setup
	$(PY) train_adapter.py --preset cpu-demo --output-dir adapters/cpu-demo
