"""Trainers: turn a MultiTaskModel, its tasks and data into training."""

from trainers.alternating import AlternatingTrainer
from trainers.joint import JointTrainer
