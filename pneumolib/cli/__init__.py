"""Command line: python -m pneumolib {experiments,run,train,evaluate,ensemble,predict,explain,stress,candidates,compare,bench,card,ablate,lungs,shortcuts,thresholds} ...

One module per command group; each command parses, calls one function of the library, and prints."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .audit import add_candidates, add_shortcuts, add_stress, add_thresholds
from .common import ArgumentParser, UsageError, check_outputs, user_errors
from .evaluate import add_card, add_compare, add_ensemble, add_evaluate
from .lungs import add_lungs
from .predict import add_explain, add_predict
from .train import add_ablate, add_bench, add_experiments, add_run, add_train

__all__ = ["ArgumentParser", "UsageError", "build_parser", "main", "reference_markdown"]


_COMMANDS = (
    add_experiments,
    add_run,
    add_train,
    add_evaluate,
    add_ensemble,
    add_card,
    add_predict,
    add_explain,
    add_bench,
    add_stress,
    add_shortcuts,
    add_ablate,
    add_candidates,
    add_lungs,
    add_compare,
    add_thresholds,
)


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per job, each added by its module's `add_<command>`."""
    p = ArgumentParser(prog="python -m pneumolib", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    for add in _COMMANDS:
        add(sub)
    return p


def reference_markdown(width: int = 100) -> str:
    """The command-line reference as Markdown, generated from `build_parser` (the docs site's command-line page is
    built from it, so the page cannot drift from the parser).

    Args:
        width: the column width the help text is wrapped at.

    Returns:
        One section per sub-command: its one-line summary, then its `--help` text in a code block.
    """

    def formatter(prog):
        return argparse.HelpFormatter(prog, width=width)

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summary = {c.dest: c.help for c in sub._choices_actions}
    parts = []
    for name, sp in sub.choices.items():
        sp.formatter_class = formatter
        parts.append(f"## `{name}`\n\n{summary.get(name, '')}\n\n```text\n{sp.format_help().rstrip()}\n```\n")
    return "\n".join(parts)


def configure_logging(verbose: bool = False) -> None:
    """The library logs through `logging`; the CLI shows its INFO lines as plain text on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("pneumolib")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args = build_parser().parse_args(argv)
        args.argv = argv  # what was asked for, as typed (common.command_line records it)
        configure_logging()
        return _dispatch(args)
    except KeyboardInterrupt:  # first: the user-error tuple below imports torch, which a Ctrl-C must not wait for
        print(f"pneumolib: interrupted; {interrupted_advice(args)}", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    """Run the command; a user's error is one line and exit code 2 (a KeyboardInterrupt goes to main)."""
    try:
        check_outputs(args)
        return args.func(args)
    except KeyboardInterrupt:
        raise
    except user_errors() as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"pneumolib: error: {msg}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.filename is None:  # not about a file the user named: a bug, shown as one
            raise
        print(f"pneumolib: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 2


def interrupted_advice(args) -> str:
    """What a Ctrl-C left, in the words of the command it stopped (every file is written whole or not at all)."""
    if args is None:
        return "nothing was written"
    if args.command == "train":
        state = Path(args.out) / "last.pt"
        if state.is_file():
            return f"the last completed epoch is kept in {state}: run the same command with --resume to continue"
        return "no epoch had completed, so there is nothing to resume; run the same command again to start over"
    if args.command in ("run", "ablate"):
        return "finished runs are kept and reused: run the same command again to go on"
    return "no output was left half-written; run the same command again"
