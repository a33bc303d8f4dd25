"""``python -m alignloop`` is the ``alignloop`` command."""

from alignloop.cli import main

main()
