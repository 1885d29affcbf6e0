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

__version__ = "0.1.0"

from shipyard.project import CheckReport, Project
from shipyard.spec import Spec, load_spec

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
