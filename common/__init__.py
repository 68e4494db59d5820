"""The ground floor, for every package: errors, rating errors (RMSE, MAE), log settings, the file
layer, memory helpers and free ports.

Nothing here imports from the project's other packages (the import-linter contract in
pyproject.toml checks it).
"""
