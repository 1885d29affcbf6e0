"""Model families — the rungs of the ladder — and the ladder that climbs them.

Every family follows one contract (:class:`Family`): keyword-only constructor, ``fit``
returns ``self``, ``predict`` / ``predict_one`` on raw rows, pickle-free ``save`` / ``load``.
From simplest to most complex: :class:`Constant`, :class:`Rule`, :class:`Linear`,
:class:`GradientBoostedTrees`. :data:`FAMILIES` maps each saved name to its class; an :class:`Explanation` says why a
model gave each row its score (``explanation``).
"""

from shipyard.models.base import Family, Watch, class_weights
from shipyard.models.constant import Constant
from shipyard.models.explanation import Explanation
from shipyard.models.gbt import GradientBoostedTrees
from shipyard.models.linear import Linear
from shipyard.models.rule import Rule

FAMILIES: dict[str, type[Family]] = {
    cls.name: cls for cls in (Constant, Rule, Linear, GradientBoostedTrees)
}

__all__ = [
    "FAMILIES",
    "Constant",
    "Explanation",
    "Family",
    "GradientBoostedTrees",
    "Linear",
    "Rule",
    "Watch",
    "class_weights",
]
