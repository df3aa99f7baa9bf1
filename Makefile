# `make app` and `make test` each do the whole set-up on a fresh machine first (scripts/setup.sh).
.PHONY: setup app test smoke cpu-demo bench
PY := .venv/bin/python

setup:
	bash scripts/setup.sh

app: setup
	.venv/bin/streamlit run app.py

test: setup
	$(PY) -m pytest -q

smoke: setup
	$(PY) train_adapter.py --preset smoke --output-dir adapters/smoke --overwrite

cpu-demo: setup
	$(PY) train_adapter.py --preset cpu-demo --output-dir adapters/cpu-demo
