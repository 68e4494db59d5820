"""The two-tower model: the Transform `preprocessing_fn`, the Keras towers, the Trainer's
`run_fn`, the retrieval fits (closed form, iALS) and the exported SavedModel's signatures.
"""
