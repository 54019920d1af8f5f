"""Which parameters the collapsed Gaussian model integrates out, as arrays (pure numpy).

Shared by the PyMC graph and the exact draws (``hierarchical``) and the compiled density's buffer
(``fastlogp``), so neither of those two imports the other.
"""

from __future__ import annotations

import numpy as np


def collapse_design(design, collapse: tuple[int, ...], predictors=None):
    """Collapsed levels, kept terms, each group's membership in the collapsed levels (G, LK), the
    incidence D of gamma = (alpha, b_treat, a_K, b_K[, gamma_Z, lambda_Z]) in the cell means (2G, d), and H = D'ND.

    ``predictors`` (G x q, centred slope predictors Z): their main effects gamma_Z and slope coefficients lambda_Z
    are linear in the cell means too (columns [Z_g, 0] for group g's control cell, [Z_g, Z_g] for its treated
    cell), so they are appended to gamma and integrated out with it."""
    lt, gl = design.level_term, design.group_levels
    in_k = np.isin(lt, collapse)
    k_idx, r_idx = np.flatnonzero(in_k), np.flatnonzero(~in_k)
    kept = [k for k in range(len(design.term_names)) if k not in collapse]
    pos = np.full(len(lt), -1)
    pos[k_idx] = np.arange(len(k_idx))
    member = np.zeros((gl.shape[0], len(k_idx)))
    for k in collapse:
        member[np.arange(gl.shape[0]), pos[gl[:, k]]] = 1.0
    one, zero = np.ones((gl.shape[0], 1)), np.zeros((gl.shape[0], 1))
    Z = np.zeros((gl.shape[0], 0)) if predictors is None else np.asarray(predictors, dtype=float).reshape(gl.shape[0], -1)
    control = np.hstack([one, zero, member, 0 * member, Z, 0 * Z])
    treated = np.hstack([one, one, member, member, Z, Z])
    D = np.stack([control, treated], axis=1).reshape(2 * gl.shape[0], -1)
    H = D.T @ (design.cell_n.reshape(-1, 1) * D)
    rest_pos = np.full(len(lt), -1)
    rest_pos[r_idx] = np.arange(len(r_idx))
    return k_idx, r_idx, kept, member, D, H, rest_pos[gl[:, kept]]
