"""The report stage: build a Quarto project from results and render it."""

from .build import build_and_render, build_project
from .render import RenderOutcome, describe_route, find_quarto, render_project

__all__ = ["build_and_render", "build_project", "RenderOutcome", "describe_route", "find_quarto", "render_project"]
