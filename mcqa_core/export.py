"""`python -m mcqa_core.export`: kept for existing commands; the command is mcqa_core/cli/export.py."""

import sys

from mcqa_core.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
