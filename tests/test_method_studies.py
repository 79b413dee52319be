"""The two method studies (benchmarks/studies): the synthetic screen's Delta_m and its ranking
by dev, and the toy landscape's objectives, front and runs through the engine's joint step."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore.benchmarks.studies import landscape
from mtlcore.benchmarks.studies import methods as screen


def test_delta_m_is_the_mean_relative_gain_over_the_single_task_losses():
  references = {"t0": 2.0, "t1": 4.0}
  assert screen.delta_m({"t0": 1.0, "t1": 4.0}, references) == pytest.approx(25.0)
  assert screen.delta_m({"t0": 3.0, "t1": 2.0}, references) == pytest.approx(0.0)


def test_the_screen_pairs_each_seed_with_its_own_single_task_models_and_dev_ranks():
  tasks, seeds = ["t0", "t1"], [0, 1]

  def run(dev, test, ms=1.0):
    return {"dev": {t: dev for t in tasks}, "test": {t: test for t in tasks},
            "ms_per_step": ms, "seconds": 1.0}

  runs = {}
  for s, reference in zip(seeds, (1.0, 10.0)):  # Seed 1's data has ten times the scale.
    runs[(0.5, screen.SINGLE, s)] = {t: run(reference, reference) for t in tasks}
    runs[(0.5, "sum", s)] = run(0.9 * reference, 0.9 * reference)
    runs[(0.5, "mgda", s)] = run(0.8 * reference, reference)  # Better on dev only.
  table = screen.summary(runs, [0.5], ["sum", "mgda"], seeds, tasks)
  assert table[(0.5, "sum")]["test"] == pytest.approx((10.0, 0.0))
  assert table[(0.5, "mgda")]["dev"] == pytest.approx((20.0, 0.0))
  assert table[(0.5, "mgda")]["test"] == pytest.approx((0.0, 0.0))
  lines = screen.report(table, [0.5], ["sum", "mgda"], tasks, preferred=1)
  assert table[(0.5, "mgda")]["paired"] == pytest.approx((-10.0, 0.0))
  assert lines[4].startswith("| 1 | mgda | +0.00 ± 0.00 | -10.00 ± 0.00 | +20.00 ± 0.00 |")
  assert lines[-1].startswith("Dev prefers, over both correlations (mean dev Δm): **mgda**")
  assert screen.bars_svg(table, [0.5], ["sum", "mgda"]).startswith("<svg")


def test_a_screen_run_scores_every_task_on_both_splits():
  run = screen.one_run("pcgrad", 0.5, 0, num_tasks=3, tasks=["t0", "t1", "t2"], steps=20,
                       hidden_size=4)
  assert set(run["dev"]) == set(run["test"]) == {"t0", "t1", "t2"}
  assert all(v > 0 for v in [*run["dev"].values(), *run["test"].values(), run["ms_per_step"]])
  single = screen.one_run("sum", 0.5, 0, num_tasks=3, tasks=["t1"], steps=20, hidden_size=4)
  assert set(single["test"]) == {"t1"}


def test_the_objectives_agree_in_numpy_and_tensorflow_and_the_front_is_pareto_stationary():
  rng = np.random.default_rng(0)
  x1, x2 = rng.uniform(-10, 10, 50), rng.uniform(-10, 10, 50)
  want = landscape.objectives(np, x1, x2)
  got = landscape.objectives(tf.math, tf.constant(x1), tf.constant(x2))
  np.testing.assert_allclose(np.stack(got), np.stack(want), rtol=1e-12)
  assert min(f.min() for f in want) >= -20.0  # So every shifted loss is >= 1.
  # On the front the two gradients are opposed: hull norm ~0 (the papers give the front's x2
  # to 4 decimals; the x2-components left are ~5e-3).
  for a in (-6.0, 0.0, 6.0):
    x = tf.Variable([a, landscape.FRONT_X2], dtype=tf.float64)
    with tf.GradientTape(persistent=True) as tape:
      f1, f2 = landscape.objectives(tf.math, x[0], x[1])
    g1, g2 = tape.gradient(f1, x).numpy(), tape.gradient(f2, x).numpy()
    assert landscape.min_norm_of_hull(g1, g2) < 1e-2
    assert landscape.distance_to_front([float(f1), float(f2)], landscape.front()) < 1e-2
  g = np.array([1.0, 0.0])
  assert landscape.min_norm_of_hull(g, -g) == 0.0
  assert landscape.min_norm_of_hull(g, g) == 1.0


def test_a_landscape_run_is_the_engines_joint_step_adam_on_the_summed_losses():
  """With `sum`, 60 steps through the JointTrainer are Adam (lr 1e-3, epsilon 1e-7) on
  f_1 + f_2, computed here in float64 numpy with the gradient by central differences."""
  run = landscape.one_run("sum", (-7.5, -0.5), steps=60, every=30, period=100)
  x, m, v = np.array([-7.5, -0.5]), np.zeros(2), np.zeros(2)
  total = lambda p: sum(landscape.objectives(np, p[0], p[1]))
  for t in range(1, 61):
    g = np.array([(total(x + e) - total(x - e)) / 2e-6 for e in np.eye(2) * 1e-6])
    m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
    x = x - 1e-3 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-7)
    if t == 30:
      np.testing.assert_allclose(run["trajectory"][1], x, atol=1e-5)
  np.testing.assert_allclose(run["trajectory"][-1], x, atol=1e-5)
  assert len(run["trajectory"]) == 3


def test_the_landscape_report_counts_the_starts_on_the_front_and_names_a_stopped_run():
  curve = landscape.front()
  on_front = {"losses": [float(curve[1000][0]), float(curve[1000][1])], "hull": 0.0,
              "trajectory": [], "seconds": 1.0, "stopped": None}
  off = dict(on_front, losses=[0.4, 6.1], hull=0.5)
  stopped = dict(off, stopped="Non-finite loss or gradient in the joint gradient of all "
                 "tasks at global step 2597; the update was not applied (403 such steps).")
  runs = {("sum", i): run for i, run in enumerate([on_front, off, stopped, on_front, off])}
  lines, reached = landscape.report(runs, ["sum"], tolerance=0.05)
  assert reached == {"sum": 2}
  assert "| sum | 2 of 5 |" in lines[2]
  assert "stopped by a non-finite step at step 2597" in lines[2]
  assert landscape.trajectories_svg(
      {k: dict(r, trajectory=[[0.0, 0.0], [1.0, -1.0]]) for k, r in runs.items()},
      ["sum"]).startswith("<svg")
