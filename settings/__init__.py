"""Settings: where outputs go (`paths`) and the Trainer's hyperparameters (`hparams`).

Above `common` only; every package above may read them.
"""
