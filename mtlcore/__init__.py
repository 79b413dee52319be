"""mtlcore: multi-task learning on tf.Module, trained with GradientTape steps compiled by XLA."""
