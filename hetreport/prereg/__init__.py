"""Pre-registration: plan a study from a design-only spec and render its appendix.

    hetreport preregister SPEC --out DIR [--scheduler tcp://host:port] [--workers N]

``design`` holds the spec's ``design:`` block (pydantic), ``plan`` resolves it against the
spec (shares, group sizes, simulated data), ``simulate`` runs the detection simulation
(compiling the hierarchical model once per cell), ``priors`` draws the prior predictive, and
``appendix`` writes the appendix, the mock report and ``registration.json``.
"""

from __future__ import annotations


def preregister(*args, **kwargs):
    from .appendix import preregister as _preregister

    return _preregister(*args, **kwargs)


__all__ = ["preregister"]
