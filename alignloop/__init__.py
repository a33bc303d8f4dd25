"""alignloop: reinforcement learning from human feedback, end to end.

The Python API mirrors the CLI, one function per command; see ``alignloop.api``.
Heavy libraries (torch, transformers) are imported only by the stages that need them,
so importing this package is instant.
"""

__version__ = "0.1.0"
