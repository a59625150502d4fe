"""Sphinx configuration: API reference from the docstrings (``make docs``)."""

from __future__ import annotations

project = "distilld"
author = "the distilld engineers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_typehints = "description"
autodoc_member_order = "bysource"
nitpicky = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
