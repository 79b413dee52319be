"""Data: readers, vocabularies and tf.data pipelines for the task sets."""
