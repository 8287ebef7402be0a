"""Progress bars that stay readable in a log file.

On a terminal a tqdm bar redraws one line in place. Written to a file (CI, ``nohup``, a
systemd journal) the same redraws become thousands of carriage-return frames in one line, so
there the bar is drawn as a whole line at most every :data:`LOG_INTERVAL_S` seconds instead.
Every long loop in the package takes its bar from :func:`progress_bar`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm import tqdm

__all__ = ["LOG_INTERVAL_S", "progress_bar"]

#: Seconds between progress lines when the output is not a terminal.
LOG_INTERVAL_S = 30.0


class _Lines:
    """A stream that turns tqdm's in-place redraws into whole lines (blank ones dropped)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self._stream.write(line + "\n")

    def flush(self) -> None:
        self._stream.flush()


class _LogBar(tqdm):
    """A bar for a log: a new postfix or description waits for the next timed line.

    tqdm redraws at once on ``set_postfix`` and ``set_description``, so a training loop that
    shows its loss each step would write a line per step into the log.
    """

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description(desc, refresh=False)


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    enabled: bool = True,
    stream: TextIO | None = None,
    **options: Any,
) -> tqdm:
    """A tqdm bar over ``iterable`` (or updated by hand), quiet when the output is a file.

    Args:
        iterable: What to iterate; None for a bar driven by ``update()``.
        enabled: False gives a bar that draws nothing.
        stream: Where to draw; standard error by default.
        **options: tqdm's own options (``desc``, ``total``, ``unit``, ``leave``).
    """
    stream = sys.stderr if stream is None else stream
    if not enabled:
        return tqdm(iterable, disable=True, **options)
    if _is_terminal(stream):
        return tqdm(iterable, file=stream, **options)
    options = {"mininterval": LOG_INTERVAL_S, "maxinterval": 2 * LOG_INTERVAL_S, **options}
    return _LogBar(iterable, file=_Lines(stream), ascii=True, **options)
