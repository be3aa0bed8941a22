"""Entry point for `python -m pneumolib`.

A Ctrl-C at any moment, even while torch is still importing, is one line and exit code 130, never a traceback."""
import sys

try:
    from .cli import main

    code = main()
except KeyboardInterrupt:
    print("pneumolib: interrupted before the command started; nothing was written", file=sys.stderr)
    code = 130
sys.exit(code)
