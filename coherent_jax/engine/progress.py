"""Progress bars and log output of the library's long loops, quiet unless someone watches.

The library logs through `logging` (the `coherent_jax` logger and its children) and shows
rich progress bars for autoencoder epochs, denoiser training, imputation targets and the
evaluation's parts. A bar shows only while `coherent_jax` logs INFO and stderr is a terminal;
otherwise (`--verbosity=-1`, output piped to a file, pytest, a notebook) `bar` hands out a
no-op. Nested bars (the evaluation imputes, imputing walks targets) share one display.

    configure_logging(logging.INFO)  # what the experiment scripts do; a notebook may too
    with bar("autoencoder rna", total=500) as b:
        for epoch in ...:
            b.advance()
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

LOGGER = logging.getLogger("coherent_jax")
_live: Progress | None = None  # the display of the outermost open bar, None when none is


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream (pytest's capture)
        return False


def shown() -> bool:
    """Whether a new bar would be drawn: `coherent_jax` logs INFO and stderr is a terminal
    (or a bar is already on screen)."""
    return _live is not None or (LOGGER.isEnabledFor(logging.INFO) and _is_terminal(sys.stderr))


class Bar:
    """One line of the progress display; every method does nothing when bars are off."""

    def __init__(self, progress: Progress | None = None, task=None):
        self._progress, self._task = progress, task

    def advance(self, amount: float = 1.0) -> None:
        """Moves the bar on by `amount`."""
        if self._progress is not None:
            self._progress.advance(self._task, amount)

    def update(self, completed: float | None = None, description: str | None = None) -> None:
        """Sets how much is done and / or the bar's text."""
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, description=description)


@contextlib.contextmanager
def bar(description: str, total: float | None) -> Iterator[Bar]:
    """A progress bar for the `with` block (see the module docstring for when it shows).

    Args:
        description: the bar's text, e.g. 'rna/specialists'.
        total: the count the bar fills up to (None: unknown).

    Yields:
        a `Bar`; it leaves the screen when the block ends, the display with the last bar.
    """
    global _live
    if not shown():
        yield Bar()
        return
    outermost = _live is None
    if outermost:
        _live = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TimeElapsedColumn(), TimeRemainingColumn(),
                         console=Console(stderr=True), transient=True)
        _live.start()  # prints and log lines to stdout / stderr go above the bars meanwhile
    progress = _live
    task = progress.add_task(description, total=total)
    try:
        yield Bar(progress, task)
    finally:
        progress.remove_task(task)
        if outermost:
            progress.stop()
            _live = None


class _Stderr(logging.StreamHandler):
    """A StreamHandler writing to whatever `sys.stderr` is when a record comes (rich's proxy
    above the bars while they show, pytest's capture under pytest)."""

    def __init__(self):
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.setStream; the stream is always sys.stderr
        pass


class _Format(logging.Formatter):
    """INFO lines as the bare message (the progress lines the scripts always printed); other
    levels tagged with level and logger."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno == logging.INFO:
            return message
        return f"{record.levelname} {record.name}: {message}"


def configure_logging(level: int = logging.INFO) -> None:
    """Shows the library's log lines of `level` and above on stderr, and its progress bars
    when `level` <= INFO and stderr is a terminal. Idempotent; records stop at `coherent_jax`
    (no second copy through the root logger's handlers, e.g. absl's).

    Args:
        level: a `logging` level (logging.WARNING silences progress and info).
    """
    LOGGER.setLevel(level)
    if not any(isinstance(h, _Stderr) for h in LOGGER.handlers):
        handler = _Stderr()
        handler.setFormatter(_Format("%(message)s"))
        LOGGER.addHandler(handler)
    LOGGER.propagate = False
