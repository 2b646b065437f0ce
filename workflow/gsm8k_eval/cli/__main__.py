"""`python -m gsm8k_eval.cli`."""

import sys

from gsm8k_eval.cli import main

sys.exit(main())
