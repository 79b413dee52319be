"""The tutorial's toy task set: two regression tasks on 10 inputs, a shared ReLU layer of 20.

options.py declares it (no TensorFlow); data.py makes the synthetic data, network.py the
model, task_set.py the TaskSet. Installed as the entry point `toy` of `mtlcore.task_sets`.
"""
