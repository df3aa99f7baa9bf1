"""`python -m mcqa_core.evaluate`, kept for existing commands and model cards: mcqa_core/cli/evaluate.py."""

import sys

from mcqa_core.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
