"""Everything that happens to data before a model is fitted.

Reading tables and their snapshot ids (``io``), column roles (``roles``), the learned data
contract (``contract``), out-of-fold association with the target (``association``), the
dataset under a spec (``dataset``), quality checks (``quality``), the leakage audit
(``leakage``) and leakage-safe splits (``split``). Checks report :class:`Finding` objects.
"""

from shipyard.data.contract import ColumnContract, Contract, Violation
from shipyard.data.dataset import Dataset
from shipyard.data.finding import Finding
from shipyard.data.io import Table, read_table, snapshot_id
from shipyard.data.leakage import leakage_findings
from shipyard.data.quality import quality_findings
from shipyard.data.split import Splits, make_splits

__all__ = [
    "ColumnContract",
    "Contract",
    "Dataset",
    "Finding",
    "Splits",
    "Table",
    "Violation",
    "leakage_findings",
    "make_splits",
    "quality_findings",
    "read_table",
    "snapshot_id",
]
