"""The ``vadindex`` command group: logging, the commands of each stage, and a fast exit."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys

import click

from vadindex import __version__
from vadindex._cli.build import build
from vadindex._cli.common import EXIT_ERROR, EXIT_PARTIAL, EXIT_USAGE  # noqa: F401 - the exit codes, for callers
from vadindex._cli.demo import demo
from vadindex._cli.detect import detect_cmd, tune_cmd
from vadindex._cli.index import check_cmd, info, manifest_cmd
from vadindex._cli.label import label_cmd
from vadindex._cli.live import alerts_cmd, watch_cmd
from vadindex._cli.report import report_cmd
from vadindex._cli.search import query
from vadindex._cli.web import serve_cmd


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else logging.DEBUG if verbose else logging.WARNING
    logger = logging.getLogger("vadindex")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="vadindex")
@click.option("-v", "--verbose", count=True, help="More log output.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
def cli(verbose: int, quiet: bool) -> None:
    """Find and flag events in video with CLIP: index once, then search and detect instantly.

    \b
      vadindex build videos/ --index indexes/cams          # decode + encode once
      vadindex query "a person climbing a fence" --index indexes/cams
      vadindex detect --index indexes/cams --prompts "people fighting; a fire"
      vadindex report --index indexes/cams --prompts "people fighting; a fire" --out report.html
      vadindex serve --index indexes/cams                  # search and review pages
    """
    _setup_logging(verbose, quiet)


for command in (
    build,
    query,
    detect_cmd,
    tune_cmd,
    label_cmd,
    report_cmd,
    serve_cmd,
    manifest_cmd,
    info,
    check_cmd,
    demo,
    watch_cmd,
    alerts_cmd,
):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point.

    The interpreter's own shutdown (tearing down every module and freeing its memory) takes 0.5-1.4 s
    on a small CPU after a command that loaded PyTorch, and about 0.1 s after one that did not,
    which is a tenth of a rescoring run; so once the exit handlers have run and the output is
    flushed, the process exits at once. Everything the commands write is closed by then (index files
    are written atomically and synced).
    """
    try:
        cli(prog_name="vadindex")
        code = 0
    except SystemExit as exc:
        code = _exit_status(exc.code)
    _fast_exit(code)


def _exit_status(code: object) -> int:
    """The process status ``sys.exit(code)`` would give (a message goes to stderr, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    click.echo(str(code), err=True)
    return 1


def _fast_exit(code: int) -> None:
    """Run the exit handlers, flush stdout and stderr, and end the process without finalisation."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe (`| head`) has nothing left to say
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
