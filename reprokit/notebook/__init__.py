"""Notebooks as files and as text, shared by every stage: finding and loading notebooks
(:mod:`reprokit.notebook.files`) and the text of cell outputs (:mod:`reprokit.notebook.text`).
Importing this package imports neither nbformat nor jupytext."""
