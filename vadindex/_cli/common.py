"""What every command shares: exit codes, one-line errors, and options declared once.

Options that belong to an option dataclass (:class:`~vadindex.ingest.options.BuildOptions`,
:class:`~vadindex.detect.options.DetectOptions`) are generated from its fields by
:func:`options_from`, with the field's help, choices and default; the others are declared here
once and shared by the commands that take them.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from vadindex import config as C
from vadindex.detect.options import DetectOptions
from vadindex.errors import InputError, VadindexError
from vadindex.options import field_type

EXIT_ERROR = 1
EXIT_USAGE = 2
#: ``vadindex build`` finished, but some videos could not be indexed (listed in failures.csv).
EXIT_PARTIAL = 3
#: Interrupted by Ctrl-C (committed work is kept).
EXIT_INTERRUPTED = 130

log = logging.getLogger("vadindex")

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Report :class:`VadindexError` and ``OSError`` as one line on stderr, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VadindexError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(EXIT_USAGE if isinstance(exc, InputError) else EXIT_ERROR)
        except OSError as exc:  # an output path that cannot be written, a full disk, a permission
            log.debug("traceback", exc_info=True)
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"Error: {where}{exc.strerror or exc}", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("Interrupted; committed work is kept.", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


def stack(*decorators: Decorator) -> Decorator:
    """Several option decorators as one, applied in the order given (first option listed first)."""

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


def options_from(cls: type, *, exclude: tuple[str, ...] = ()) -> Decorator:
    """Click options for the fields of an option dataclass: ``--segment-threshold`` for
    ``segment_threshold``, with the field's help, choices and default.

    Every generated option defaults to ``None`` (the default is shown in the help), so a command
    can tell the values a user gave from the ones left alone: pass them to the API, a config file
    or an existing index's settings fill the rest.
    """
    decorators = []
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        meta = f.metadata
        kind = field_type(cls, f.name)
        choices = meta.get("choices")
        help_text = meta.get("help", "")
        if "[default:" not in help_text and f.default is not None:
            shown = f"{f.default:g}" if isinstance(f.default, float) else str(f.default)
            help_text = f"{help_text}  [default: {shown}]"
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            flag = f"{flag}/--no-{f.name.replace('_', '-')}"
        decorators.append(
            click.option(
                flag,
                f.name,
                type=click.Choice(choices) if choices else (None if kind is bool else kind),
                default=None,
                metavar=meta.get("metavar"),
                help=help_text,
            )
        )
    return stack(*decorators)


def given(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Remove the fields of option dataclass ``cls`` from a command's keyword arguments and return
    those the user gave (not ``None``)."""
    out = {}
    for f in dataclasses.fields(cls):
        value = values.pop(f.name, None)
        if value is not None:
            out[f.name] = value
    return out


def format_option(choices: tuple[str, ...] = ("table", "csv", "json")) -> Decorator:
    """``--format``: the first choice is the default; json and csv are for scripts."""
    return click.option(
        "--format", "fmt", type=click.Choice(choices), default=choices[0], show_default=True,
        help="Output format; json and csv are for scripts.",
    )  # fmt: skip


def index_option(help: str = "Index folder.") -> Decorator:
    """``--index DIR`` (``-i``), required."""
    return click.option("--index", "-i", "index", required=True, type=click.Path(path_type=str), help=help)


def index_argument_or_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--index DIR`` as everywhere, or ``INDEX`` as the first argument (the older form)."""

    @click.argument("index_arg", required=False, metavar="[INDEX]", type=click.Path(path_type=str))
    @click.option(
        "--index", "-i", "index", default=None, type=click.Path(path_type=str), help="Index folder."
    )
    @functools.wraps(fn)
    def wrapper(*args: Any, index_arg: str | None, index: str | None, **kwargs: Any) -> Any:
        if (index_arg is None) == (index is None):
            raise click.UsageError("give the index folder once: --index DIR (or INDEX)")
        return fn(*args, index=index or index_arg, **kwargs)

    return wrapper


def device_option(what: str = "the encoder") -> Decorator:
    """``--device``."""
    return click.option(
        "--device", default=C.DEFAULT_DEVICE, show_default=True,
        help=f"Device for {what}: auto, cpu, cuda, cuda:N or mps.",
    )  # fmt: skip


#: ``--text-encoder`` of commands that encode texts against an index (query, detect, tune).
text_encoder_option = click.option(
    "--text-encoder", "text_encoder", type=click.Choice(C.TEXT_ENCODERS), default=C.DEFAULT_TEXT_ENCODER,
    show_default=True,
    help="How new texts are encoded: auto (the text tower exported to ONNX once, no torch; else torch, "
    "exporting it for next time), onnx (export first if needed) or torch (--device applies to torch).",
)  # fmt: skip
#: ``--pretrained`` of commands that read an index: the index knows its weights unless they moved.
moved_weights_option = click.option(
    "--pretrained", default=None, help="The index's checkpoint file, if it moved."
)
progress_option = click.option(
    "--progress/--no-progress", default=None, help="Progress bar. [default: on a terminal]"
)

PROMPTS_HELP = (
    "Anomaly prompts: a built-in set (ucf-crime, xd-violence, general), a .yaml set, ';'-separated "
    "text or a file with one per line."
)


def prompts_option(required: bool = False) -> Decorator:
    """``--prompts`` (``-p``)."""
    return click.option(
        "--prompts", "-p", required=required, default=None,
        help=PROMPTS_HELP + ("" if required else " Required unless --config sets it."),
    )  # fmt: skip


normal_prompts_option = click.option(
    "--normal-prompts", default=None,
    help="Normal prompts, same forms (replace a set's normal classes). "
    "[default: the set's, or a built-in list of everyday scenes]",
)  # fmt: skip


def annotations_options(help: str) -> Decorator:
    """``--annotations FILE`` and ``--annotation-format``."""
    return stack(
        click.option("--annotations", type=click.Path(path_type=str), default=None, help=help),
        click.option(
            "--annotation-format", type=click.Choice(C.ANNOTATION_FORMATS), default="auto", show_default=True,
            help="Format of --annotations.",
        ),
    )  # fmt: skip


config_option = click.option(
    "--config", "config_file", type=click.Path(path_type=str), default=None,
    help="YAML settings (as `vadindex tune` writes); options given here override it.",
)  # fmt: skip


EXAMPLES_HELP = (
    "image files or segments (VIDEO@SECONDS, or VIDEO_ID:SEGMENT as query and detect print them), "
    "';'-separated: a class of {} examples."
)

#: ``--anomaly-examples`` and ``--normal-examples``.
examples_options = stack(
    click.option("--anomaly-examples", default=None, metavar="EXAMPLES",
                 help="Anomaly examples: " + EXAMPLES_HELP.format("anomaly")),
    click.option("--normal-examples", default=None, metavar="EXAMPLES",
                 help="Normal examples: " + EXAMPLES_HELP.format("normal")),
)  # fmt: skip


def detect_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Everything that decides what a detection flags: prompts, examples, ``--config``, every
    :class:`~vadindex.detect.options.DetectOptions` field, and annotations."""
    return stack(
        prompts_option(),
        normal_prompts_option,
        examples_options,
        config_option,
        options_from(DetectOptions),
        annotations_options(
            "UCF-Crime or XD-Violence temporal annotation file: adds frame-level AUC/AP, segment-level "
            "and per-class metrics."
        ),
    )(fn)


def show_progress(progress: bool | None) -> bool:
    """``--progress/--no-progress``, or on a terminal."""
    return sys.stderr.isatty() if progress is None else progress
