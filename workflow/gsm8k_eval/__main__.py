"""`python -m gsm8k_eval` is the `gsm8k-eval` console script."""

import sys

from gsm8k_eval.cli import main

sys.exit(main())
