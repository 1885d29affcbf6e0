"""Features: what a model sees, made from the raw columns the contract admits.

One concept lives here, the :class:`Transform` (``transform``): the single feature
transform used by training, batch scoring and serving alike — median imputation with
missing indicators, standardization, booleans as 0/1, a train vocabulary with one UNKNOWN
bucket (or the hashing trick) for categories, and datetime parts — fitted on the train split
only, with a vectorized frame path and a one-record path that give identical output.
"""

from shipyard.features.transform import Transform

__all__ = ["Transform"]
