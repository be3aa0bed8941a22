"""Entry point for `python -m pneumolib`."""
import sys

from .cli import main

sys.exit(main())
