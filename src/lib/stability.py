"""Experiments of the edge-of-stability chapter (dynamics floor).

Sharpness runs at several step sizes, last-bit families, the reduced model of Sun et al.
and the summaries the chapter reads from them: the machinery behind
``book/edge-of-stability.md``, kept here so the chapter shows the idea in short cells.
"""

from __future__ import annotations
