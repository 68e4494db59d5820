"""TFX module files and custom components for the MovieLens pipeline.

Data path: raw MovieLens files (`movielens_files`) -> tf.Examples (`example_gen`)
-> tf.Transform (`preprocessing`) -> two-tower Keras model (`model`, `trainer`).
"""
