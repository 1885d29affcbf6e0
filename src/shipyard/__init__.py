"""shipyard: take a tabular model from a data file to production and keep it healthy there.

The package root re-exports what a user scripts against: the :class:`Project` (every
command-line action has a method twin), the validated :class:`Spec`, the error tree, and
what a notebook reaches for next: :func:`load_bundle` and the :class:`Bundle` it returns,
:func:`read_table` and its :class:`Table`, the learned :class:`Contract`, a check's
:class:`Finding`, the feature :class:`Transform`, and the :class:`Workspace` (the
``.shipyard/`` folder: bundles, the deployment record, logs, the tracker). Concepts live one per module (see
``docs/architecture.md``). Importing the root stays light: everything that pulls in pandas
is imported on first use.
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

_LAZY = {
    "Bundle": "shipyard.bundle",
    "CheckReport": "shipyard.project",
    "Contract": "shipyard.data.contract",
    "Finding": "shipyard.data.finding",
    "Project": "shipyard.project",
    "Table": "shipyard.data.io",
    "Transform": "shipyard.features.transform",
    "Workspace": "shipyard.workspace",
    "load_bundle": "shipyard.bundle",
    "read_table": "shipyard.data.io",
}


def __getattr__(name: str):
    # These pull in pandas (Project, the whole pipeline): imported on first use, so that
    # `shipyard rollback` and the registry start in milliseconds.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'shipyard' has no attribute {name!r}")


__all__ = [
    "Bundle",
    "CheckReport",
    "Contract",
    "ContractViolation",
    "DataError",
    "Finding",
    "NotFittedError",
    "Project",
    "ShipyardError",
    "Spec",
    "SpecError",
    "Table",
    "Transform",
    "Workspace",
    "WorkspaceError",
    "__version__",
    "load_bundle",
    "load_spec",
    "read_table",
]
