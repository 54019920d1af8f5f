"""Write data/simulated.csv: one data set of the seed paper's section 4 design.

Binary treatment (p = .5), four binary modifiers (p = .3, .4, .5, .6), a fully crossed
outcome model whose treatment effect in the all-zero group is .5 and whose other
coefficients are drawn from N(0, .25); outcome SD .25; N = 2,500. Each row carries its
group's true treatment effect (``true_effect``), which the report shows next to both
approaches' estimates. Run from the repository root:

    python examples/simulated/make_data.py
"""

from pathlib import Path

from hetreport.simstudy.paper import simulate_study

if __name__ == "__main__":
    study = simulate_study(n=2500, sd=0.25, coef_mean=0.0, seed=2024)
    out = Path(__file__).resolve().parent / "data" / "simulated.csv"
    study.data.round(6).to_csv(out, index=False)
    print(f"wrote {out} ({len(study.data):,} rows); true group effects:")
    print(study.truth.to_string(index=False))
