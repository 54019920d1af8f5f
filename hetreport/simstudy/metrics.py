"""Metrics of one replication, and their averages over replications with Monte-Carlo SEs.

Per replication and approach, over the groups that *every* approach in the run estimates
(so approaches are compared on the same groups): RMSE, bias (mean error) and mean absolute
error of the group effects against the truth; 90% and 95% interval coverage and mean width
(over those groups whose interval exists); RMSE of the predicted outcomes against the
observed outcomes (the paper's model-fit metric) and against their true means.

Across replications every metric is averaged and given a Monte-Carlo standard error
(SD over replications / sqrt(R)); a difference between two approaches is computed within
each replication first (paired), so its MC SE is that of the paired differences.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = ("rmse", "bias", "mae", "coverage_90", "coverage_95", "width_90", "width_95", "rmse_y", "rmse_mu", "fit_s")
NOMINAL = {"coverage_90": 0.90, "coverage_95": 0.95}


def common_groups(tables: dict[str, pd.DataFrame]) -> np.ndarray:
    """Boolean mask of the groups every approach estimated (tables share the group order)."""
    mask = None
    for t in tables.values():
        ok = t["estimable"].to_numpy(dtype=bool) & np.isfinite(t["estimate"].to_numpy(dtype=float))
        mask = ok if mask is None else mask & ok
    return mask


def group_metrics(table: pd.DataFrame, truth: np.ndarray, mask: np.ndarray) -> dict:
    est = table["estimate"].to_numpy(dtype=float)[mask]
    tr = np.asarray(truth, dtype=float)[mask]
    err = est - tr
    out = {"n_compared": int(mask.sum())}
    if err.size == 0:
        return {
            **out,
            **{k: np.nan for k in ("rmse", "bias", "mae", "coverage_90", "coverage_95", "width_90", "width_95")},
            "n_intervals": 0,
        }
    out.update(rmse=float(np.sqrt(np.mean(err**2))), bias=float(np.mean(err)), mae=float(np.mean(np.abs(err))))
    n_int = 0
    for level in (90, 95):
        lo = table[f"lower_{level}"].to_numpy(dtype=float)[mask]
        hi = table[f"upper_{level}"].to_numpy(dtype=float)[mask]
        ok = np.isfinite(lo) & np.isfinite(hi)
        n_int = int(ok.sum())
        out[f"coverage_{level}"] = float(np.mean((lo[ok] <= tr[ok]) & (tr[ok] <= hi[ok]))) if ok.any() else np.nan
        out[f"width_{level}"] = float(np.mean(hi[ok] - lo[ok])) if ok.any() else np.nan
    out["n_intervals"] = n_int
    return out


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)))


def _mc(values: pd.Series) -> tuple[float, float, int]:
    v = values.dropna().to_numpy(dtype=float)
    if v.size == 0:
        return np.nan, np.nan, 0
    se = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else np.nan
    return float(v.mean()), se, int(v.size)


def summarise(results: pd.DataFrame, metrics=METRICS) -> pd.DataFrame:
    """One row per cell x approach: ``<metric>`` (mean over replications) and ``<metric>_se``,
    plus the numbers of replications that ran and failed."""
    rows = []
    keys = ["cell", "cell_index", "n", "sd", "approach"]
    for key, grp in results.groupby(keys, sort=True):
        ok = grp[grp["status"] == "ok"]
        row = dict(zip(keys, key))
        row["replications"] = int(len(ok))
        row["failed"] = int((grp["status"] != "ok").sum())
        for m in metrics:
            if m in ok:
                row[m], row[f"{m}_se"], _ = _mc(ok[m])
        if "compile" in ok:
            row["compiles"] = int(ok["compile"].isin(["compile", "fallback"]).sum())
        for col in ("divergences", "treedepth_hits"):
            if col in ok and ok[col].notna().any():
                row[col] = float(ok[col].mean())
        for col in ("min_ess_bulk",):
            if col in ok and ok[col].notna().any():
                row[col] = float(ok[col].min())
        if "max_rhat" in ok and ok["max_rhat"].notna().any():
            row["max_rhat"] = float(ok["max_rhat"].max())
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.sort_values(["cell_index", "approach"]).reset_index(drop=True) if len(out) else out


def paired(results: pd.DataFrame, metric: str, a: str, b: str) -> pd.DataFrame:
    """Per cell: mean of (metric under ``a`` − metric under ``b``) over replications where both ran, with its MC SE."""
    ok = results[results["status"] == "ok"]
    wide = ok.pivot_table(index=["cell", "cell_index", "n", "sd", "rep"], columns="approach", values=metric)
    rows = []
    if a not in wide or b not in wide:
        return pd.DataFrame(columns=["cell", "cell_index", "n", "sd", "diff", "diff_se", "replications", "ratio"])
    for key, grp in wide.groupby(level=["cell", "cell_index", "n", "sd"], sort=True):
        d = (grp[a] - grp[b]).dropna()
        mean, se, r = _mc(d)
        ratio = float(grp[a].mean() / grp[b].mean()) if grp[b].mean() else np.nan
        rows.append(
            {
                "cell": key[0],
                "cell_index": key[1],
                "n": key[2],
                "sd": key[3],
                "diff": mean,
                "diff_se": se,
                "replications": r,
                "ratio": ratio,
            }
        )
    return pd.DataFrame(rows).sort_values("cell_index").reset_index(drop=True)


def verdict(diff: float, se: float, z: float = 2.0) -> str:
    """'better' when a − b is below zero by more than z MC SEs, 'worse' above, else 'unclear'."""
    if not np.isfinite(diff):
        return "unclear"
    if not np.isfinite(se) or se == 0:
        return "better" if diff < 0 else ("worse" if diff > 0 else "unclear")
    return "better" if diff < -z * se else ("worse" if diff > z * se else "unclear")
