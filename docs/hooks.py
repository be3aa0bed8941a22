"""MkDocs hook: fills the command-line page's reference from the parser at build time (it cannot drift from it)."""

from pneumolib.cli import reference_markdown

MARKER = "<!-- cli-reference -->"


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == "cli.md":
        if MARKER not in markdown:
            raise ValueError(f"docs/cli.md lost its {MARKER} marker")
        return markdown.replace(MARKER, reference_markdown())
    return markdown
