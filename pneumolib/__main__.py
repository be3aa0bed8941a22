"""Entry point for `python -m pneumolib`.

A Ctrl-C at any moment, even while torch is still importing, is one line and exit code 130, never a traceback: the
handler is installed before anything is imported and remembers the interrupt, so a library that swallows the
KeyboardInterrupt during its import (a bare `except:`) cannot make the command carry on as if nothing happened."""

import signal
import sys

_seen: list[bool] = []


def _on_sigint(signum, frame):
    _seen.append(True)
    raise KeyboardInterrupt


signal.signal(signal.SIGINT, _on_sigint)
try:
    from .cli import main

    if _seen:  # interrupted during the imports, and something swallowed it
        raise KeyboardInterrupt
    code = main()
except KeyboardInterrupt:
    print("pneumolib: interrupted before the command started; nothing was written", file=sys.stderr)
    code = 130
sys.exit(code)
