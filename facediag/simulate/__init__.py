"""Simulated facial dysmorphology on real faces: a benchmark whose truth is known (issue 23).

``python -m facediag.simulate out=<dir> source=london strength=<SD> seed=<int>`` writes a class-folder tree
(``healthy`` plus simulated conditions) with ``subjects.csv``, ``truth.csv`` and a truth mask per image;
docs/simulate.md describes the conditions, their measures and the capture matching. Research tool, not a diagnosis.
"""
