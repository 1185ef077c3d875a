"""Experiments of the floating-point chapter that train or sweep (dynamics floor).

Gradient descent near the constructions in each float format, perturbation sweeps and the
counts taken along them: the machinery behind ``book/floating-point.md``, kept here so the
chapter shows the idea in short cells.
"""

from __future__ import annotations
