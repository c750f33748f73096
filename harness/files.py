"""Writing output files: atomically (a reader never sees half a file, two writers never share a temporary name)
and, for CSVs, safe to open in a spreadsheet."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

# OWASP "CSV injection": a cell starting with one of these is run as a formula by spreadsheet programs. Prefixing
# a quote makes it text again.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write via a uniquely named temporary file in the same folder, then rename over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def temporary_sibling(path: Path) -> Path:
    """A unique temporary path beside `path`, for writers that need a file name (parquet, PDF); the caller
    renames it over `path` with os.replace."""
    fd, tmp = tempfile.mkstemp(prefix=f".{Path(path).name}.", suffix=".tmp", dir=Path(path).parent)
    os.close(fd)
    return Path(tmp)


def safe_cell(value):
    """A text cell that a spreadsheet would run as a formula, quoted; anything else unchanged. Numbers are
    numbers (a negative amount stays a number)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Every CSV the project writes goes through here: text cells neutralised, column names too."""
    safe = frame.copy()
    for column in safe.columns:
        # Any column that can hold text: object, pandas' own string dtype (the default for text since pandas 3),
        # categories. Numeric columns stay numbers.
        if not pd.api.types.is_numeric_dtype(safe[column]) and not pd.api.types.is_bool_dtype(safe[column]):
            safe[column] = safe[column].astype(object).map(safe_cell)
    safe.columns = [safe_cell(str(c)) for c in safe.columns]
    atomic_write(path, safe.to_csv(index=False))
