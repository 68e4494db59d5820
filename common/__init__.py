"""The ground floor: errors, log settings, the file layer and memory helpers every package uses.

Nothing here imports from the project's other packages (the import-linter contract in
pyproject.toml checks it).
"""
