"""Tensor operations the towers share: run a layer once per distinct id of a batch, and sum rows per segment.

Why: a batch holds far fewer distinct users and movies than examples, so the towers encode
each distinct id once and gather the result back; the user history is read as fused sparse
segment sums (see model.model's docstring, "Speed").
"""
from __future__ import annotations

import tensorflow as tf


def unique_rows(ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(first position of each distinct id, index of each row's id among the distinct ones)."""
    unique, index = tf.unique(ids)
    positions = tf.math.unsorted_segment_min(tf.range(tf.shape(ids)[0]), index, tf.shape(unique)[0])
    return positions, index


def segment_sum(table: tf.Tensor, ids: tf.Tensor, segments: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
    """tf.sparse.segment_sum(table, ids, segments, n) (segments sorted), safe when ids is empty.

    With no ids, TF 2.21's CPU gradient of SparseSegmentSum returns uninitialised memory
    (garbage, then NaN through the L2 penalty) instead of zeros; one extra entry (row 0 into
    an extra segment, dropped) keeps the input non-empty and adds nothing.
    """
    ids = tf.concat([ids, tf.zeros([1], ids.dtype)], 0)
    segments = tf.concat([segments, tf.reshape(tf.cast(n, segments.dtype), [1])], 0)
    return tf.sparse.segment_sum(table, ids, segments, num_segments=n + 1)[:-1]
