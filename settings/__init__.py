"""The ground floor: names, paths, hyperparameters, errors and log settings.

Every other package may import from here; nothing here imports from the project's other
packages (the import-linter contract in pyproject.toml checks it).
"""
