"""Arrays a layer serves but never trains, held as its non-trainable weights.

Why weights rather than tf.constant: Keras saves a layer's weights with it and the SavedModel
export tracks them as variables, so tables of many megabytes (rating histories, Gibbs sample
rows) are written once as checkpoint data instead of being inlined into every traced graph.
"""
from __future__ import annotations

import keras
import numpy as np


def frozen_weight(layer: keras.layers.Layer, name: str, value: np.ndarray, dtype: str = "float32"):
    """A non-trainable weight of ``layer`` named ``name`` that holds ``value`` (cast to ``dtype``)."""
    weight = layer.add_weight(name=name, shape=np.shape(value), dtype=dtype, initializer="zeros", trainable=False)
    weight.assign(np.asarray(value, dtype))
    return weight
