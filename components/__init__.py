"""The pipeline's custom TFX components: ExampleGen, the data gate, the Trainer with its
catalogue input, the vectorised Evaluator and the atomic Pusher.

The code they run lives below: the data path in `data`, the model and the module files
(`preprocessing_fn`, `run_fn`) in `model`.
"""
