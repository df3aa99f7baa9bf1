"""`python -m mcqa_core.publish`: kept for existing commands; the command is mcqa_core/cli/publish.py."""

import sys

from mcqa_core.cli.publish import main

if __name__ == "__main__":
    sys.exit(main())
