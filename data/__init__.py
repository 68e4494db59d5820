"""The data path: MovieLens files in, one validated data set and the feature table out.

`features` (every raw and transformed feature, as one table), `movielens_files` (the parsers),
`dataset_download` (the official archives), `synthetic_data` (stand-in data in the same
formats) and `catalogue` (the users and movies a model was trained with, as a TFX artifact).
"""
