"""What templates may see: plain, read-only data made from the report's records.

``template_data`` turns the report builder's context (records, tables, mappings) into numbers,
strings, tuples and read-only :class:`View` mappings; fitted posteriors and arrays of draws are not
handed over. The report (build.py) and the brief (brief.py) both pass their contexts through it;
it lives apart from both so that neither imports the other for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..results import AnalysisResults


class View(Mapping):
    """A read-only view of plain data for templates: ``v.key`` and ``v['key']``, nothing else
    of the object it was made from (no methods, no file writers)."""

    __slots__ = ("_data",)

    def __init__(self, data: dict):
        object.__setattr__(self, "_data", data)

    def __getattr__(self, key):
        try:
            return self._data[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        raise TypeError("template data is read-only")

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)

    def __repr__(self):
        return f"View({self._data!r})"


_ANALYSIS_FIELDS = (
    "name",
    "title",
    "modifiers",
    "outcome",
    "treatment",
    "controls",
    "groups",
    "accounting",
    "diagnostics",
    "hierarchical",
    "ols",
    "n",
    "n_start",
    "notes",
)


class Kept:
    """A value the report builder keeps for itself (a figure's plot, for report/paper/): templates
    never see it (``template_data`` turns it into None)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def template_data(obj):
    """What a template may see of ``obj``: numbers, strings (markup stays markup), tuples and
    read-only views; pandas tables become tuples of rows; fitted posteriors and arrays of draws
    are not handed to templates at all. Anything else is a bug here, raised as TypeError."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Kept):
        return None
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, View):
        return obj
    if isinstance(obj, AnalysisResults):  # the fitted model's tables and words, not its draws
        return View({k: template_data(getattr(obj, k)) for k in _ANALYSIS_FIELDS} | {"modifier_names": tuple(obj.modifier_names)})
    if isinstance(obj, pd.DataFrame):
        return tuple(View({str(k): template_data(v) for k, v in row.items()}) for row in obj.to_dict(orient="records"))
    if isinstance(obj, (pd.Series, np.ndarray)):
        return tuple(template_data(v) for v in obj.tolist())
    if isinstance(obj, Mapping):
        return View({k: template_data(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple, set, frozenset)):
        return tuple(template_data(v) for v in obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        return View({f.name: template_data(getattr(obj, f.name)) for f in fields(obj)})
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__module__}.{type(obj).__name__} is not template data")
