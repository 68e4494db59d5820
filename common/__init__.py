"""The ground floor: errors, log settings, the file layer, memory helpers and free ports, for every package.

Nothing here imports from the project's other packages (the import-linter contract in
pyproject.toml checks it).
"""
