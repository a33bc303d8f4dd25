"""Bridges to the labeling tools people already use: Label Studio and Argilla.

- ``tasks``         what a tool's file holds once read (``ExternalTask``, ``ExternalJudgement``)
- ``label_studio``  Label Studio's JSON export read, and its task import written
- ``argilla``       Argilla 2.x ranking records read, and records written to log into a dataset
- ``tools``         ``TOOLS``, the registry of the tools (the ``--format`` choices)
- ``store``         ``import_judgements`` (one transaction) and ``export_tasks``

A new tool is one module with ``NAME``, ``read_tasks(path, keys)`` and ``write_tasks(tasks, path, keys)``,
registered in ``tools.TOOLS``.
"""
