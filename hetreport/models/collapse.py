"""Which parameters the collapsed Gaussian model integrates out, as arrays (pure numpy).

Shared by the PyMC graph and the exact draws (``hierarchical``) and the compiled density's buffer
(``fastlogp``), so neither of those two imports the other.
"""

from __future__ import annotations

import numpy as np


def collapse_design(design, collapse: tuple[int, ...]):
    """Collapsed levels, kept terms, each group's membership in the collapsed levels (G, LK), the
    incidence D of gamma = (alpha, b_treat, a_K, b_K) in the cell means (2G, d), and H = D'ND."""
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
    D = np.stack([np.hstack([one, zero, member, 0 * member]), np.hstack([one, one, member, member])], axis=1).reshape(2 * gl.shape[0], -1)
    H = D.T @ (design.cell_n.reshape(-1, 1) * D)
    rest_pos = np.full(len(lt), -1)
    rest_pos[r_idx] = np.arange(len(r_idx))
    return k_idx, r_idx, kept, member, D, H, rest_pos[gl[:, kept]]
