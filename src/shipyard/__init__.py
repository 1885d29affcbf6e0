"""shipyard: take a tabular model from a data file to production and keep it healthy there.

The package root re-exports what a user scripts against: the :class:`Project` (every
command-line action has a method twin), the validated :class:`Spec`, and the error tree.
Concepts live one per module (see ``DESIGN.md``): ``spec``, ``data.io``, ``data.contract``,
``data.quality``, ``data.leakage``, ``data.split``.
"""

from shipyard.errors import (
    ContractViolation,
    DataError,
    NotFittedError,
    ShipyardError,
    SpecError,
    WorkspaceError,
)
from shipyard.spec import Spec, load_spec

__version__ = "0.1.0"

_LAZY = {"CheckReport": "shipyard.project", "Project": "shipyard.project"}


def __getattr__(name: str):
    # Project pulls in pandas and the whole pipeline: imported on first use, so that
    # `shipyard rollback` and the registry start in milliseconds.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'shipyard' has no attribute {name!r}")


__all__ = [
    "CheckReport",
    "ContractViolation",
    "DataError",
    "NotFittedError",
    "Project",
    "ShipyardError",
    "Spec",
    "SpecError",
    "WorkspaceError",
    "__version__",
    "load_spec",
]
