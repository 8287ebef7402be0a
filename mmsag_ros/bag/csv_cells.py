"""Text cells of the CSV tables we write, kept from running as spreadsheet formulas.

A ``frame_id`` or a topic comes from whoever publishes on the camera topic. A cell starting
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a formula by Excel,
LibreOffice and Google Sheets when the table is opened there (CSV injection), so such a cell
is written with a leading apostrophe, which spreadsheets show as text. Our readers take the
apostrophe off again, so a table round-trips.
"""

from __future__ import annotations

__all__ = ["read_cell", "text_cell"]

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: str) -> str:
    """``value`` as a CSV cell that no spreadsheet runs as a formula."""
    if value.startswith((*_FORMULA_STARTS, "'")):
        # An apostrophe of the value's own is doubled, so read_cell gives it back unchanged.
        return "'" + value
    return value


def read_cell(cell: str) -> str:
    """The value :func:`text_cell` wrote (a cell without its added apostrophe)."""
    return cell[1:] if cell.startswith("'") else cell
