"""hetreport: heterogeneous treatment effects from interaction and hierarchical models."""

__version__ = "0.1.0"
