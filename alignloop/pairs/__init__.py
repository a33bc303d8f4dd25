"""Pairs: rankings and thumbs → chosen/rejected comparisons; import and export formats.

``build`` turns ranking arrays into pair arrays (vectorised), ``dataset`` builds the
project's comparisons with provenance and keeps imported pairs, ``formats`` writes and
reads the alignloop / TRL / OpenRLHF / HH JSONL formats.
"""

from alignloop.pairs.dataset import ImportResult, build_pairs, build_unpaired, import_pairs, imported_pairs
from alignloop.pairs.formats import FORMATS, detect_format, format_rows, read_pairs, write_pairs

__all__ = [
    "FORMATS",
    "ImportResult",
    "build_pairs",
    "build_unpaired",
    "detect_format",
    "format_rows",
    "import_pairs",
    "imported_pairs",
    "read_pairs",
    "write_pairs",
]
