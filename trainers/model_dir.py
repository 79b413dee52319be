"""ModelDir: the one owner of a run's model directory, its layout, lock and writes.

  config.json      the run's settings (trainers.config.RunConfig), checked on resume
  checkpoints/     training state: the trainer (weights, optimizer slots, counters, sampler,
                   input iterators) and the best metric so far; the last few kept
  best/            the weights of the best-on-dev evaluation so far (--select_by says how it
                   is chosen); best/TASK/ each task's own best, with --best_per_task
  assets/          files the task set keeps beside the weights (e.g. vocabularies)
  train/, eval/    TensorBoard runs; the HParams session is written at the top
  metrics.json     held-out metrics of the best checkpoint, after training
  .lock            who is training in this directory

The lock is an advisory `flock` on `.lock`, which holds the holder's pid, host and start time:
a second run is refused with one line naming the holder; the kernel releases the lock of a
process that dies, so a lock left by a killed run is taken over (and logged). `flock` is
reliable on local file systems only; on NFS and other network file systems two machines may
both acquire it.

The checkpoint files are the truth, not TensorFlow's `checkpoint` state file beside them:
when that file is missing or unreadable, or a complete checkpoint on disk is newer than the
newest it lists, the run rebuilds it from the `ckpt-N.index` files (logged), so it resumes
from the newest readable one and `max_to_keep` still sees the older ones; a checkpoint is
read in full (`readable`) before it is restored, so a damaged one is skipped before any of
its values is assigned. Staging directories of a checkpoint write that was killed
(`ckpt-N_temp/`) are removed when the directory is taken.

Every write goes through `guarded(what)`: a full disk, a file-size limit or an unwritable file
becomes one StorageError line naming what could not be written, and the last good checkpoint
is left intact (TensorFlow writes a checkpoint under a temporary name and updates the
`checkpoint` state file only after it is complete).
"""

import contextlib
import datetime
import fcntl
import glob
import json
import os
import re
import shutil
import socket
import tempfile

import tensorflow as tf
from absl import logging

from mtlcore.errors import ConfigError, DataError, MtlError, StorageError
from mtlcore.files import write_json_atomically

_REASONS = ("No space left on device", "File too large", "Disk quota exceeded",
            "Read-only file system", "Permission denied")


def _reason(error):
  """The short cause of an OSError or a TensorFlow OpError (e.g. 'No space left on device')."""
  if isinstance(error, OSError) and error.strerror:
    return error.strerror
  text = str(error)
  for reason in _REASONS:
    if reason in text:
      return reason
  return re.sub(r"\s+", " ", text)[:200]


class ModelDirInUse(MtlError):
  """Another live process holds the model directory."""


class ModelDir:
  """Paths of one model directory, its checkpoints, its lock and its guarded writes."""

  def __init__(self, path):
    self.path = os.fspath(path)
    self.checkpoints = os.path.join(self.path, "checkpoints")
    self.best = os.path.join(self.path, "best")
    self.assets = os.path.join(self.path, "assets")
    self.train_run = os.path.join(self.path, "train")
    self.eval_run = os.path.join(self.path, "eval")
    self.config_file = os.path.join(self.path, "config.json")
    self.metrics_file = os.path.join(self.path, "metrics.json")
    self.lock_file = os.path.join(self.path, ".lock")
    self._lock_fd = None

  def __repr__(self):
    return f"ModelDir({self.path!r})"

  # Creation and the lock.

  def prepare(self):
    """Creates the directory and assets/ if needed and checks that it is writable."""
    try:
      os.makedirs(self.assets, exist_ok=True)
      fd, probe = tempfile.mkstemp(dir=self.path, prefix=".write-test.")
      os.close(fd)
      os.remove(probe)
    except OSError as e:
      raise ConfigError(f"--model_dir={self.path} is not a writable directory "
                        f"({e.strerror}).") from None
    return self

  def lock(self):
    """Takes the directory for this process, or raises ModelDirInUse naming the holder;
    then removes what a killed checkpoint write left (`ckpt-N_temp/`)."""
    fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.read(fd, 4096).decode("utf-8", "replace").strip()
      os.close(fd)
      raise ModelDirInUse(f"--model_dir={self.path} is in use by another run "
                          f"({self._describe(holder)}); wait for it to end or use another "
                          f"--model_dir.") from None
    previous = os.read(fd, 4096).decode("utf-8", "replace").strip()
    if previous:
      logging.warning("Took over the lock of %s: that run ended without releasing it "
                      "(killed?).", self._describe(previous))
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": datetime.datetime.now().isoformat(timespec="seconds")}
    try:
      os.ftruncate(fd, 0)
      os.pwrite(fd, json.dumps(holder).encode(), 0)
    except OSError as e:
      os.close(fd)
      raise StorageError(f"could not write the lock file {self.lock_file} "
                         f"({_reason(e)}).") from None
    self._lock_fd = fd
    for temporary in self._temporaries():
      logging.info("Removed %s, left by a checkpoint write that did not finish.", temporary)
      shutil.rmtree(temporary, ignore_errors=True)
    return self

  def _temporaries(self):
    return sorted(glob.glob(os.path.join(self.checkpoints, "*_temp"))
                  + glob.glob(os.path.join(self.best, "*_temp"))
                  + glob.glob(os.path.join(self.best, "*", "*_temp")))  # best/TASK/

  @staticmethod
  def _describe(holder):
    try:
      info = json.loads(holder)
      return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (ValueError, KeyError, TypeError):
      return "an unknown process"

  def unlock(self):
    """Releases the lock (clearing the holder), if this object holds it."""
    if self._lock_fd is None:
      return
    with contextlib.suppress(OSError):
      os.ftruncate(self._lock_fd, 0)
    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
    os.close(self._lock_fd)
    self._lock_fd = None

  def __enter__(self):
    return self.lock()

  def __exit__(self, *exc):
    self.unlock()

  # Guarded writes.

  @contextlib.contextmanager
  def guarded(self, what):
    """Turns a failed write of `what` into one StorageError line that says what survives."""
    try:
      yield
    except (OSError, tf.errors.OpError) as e:
      if isinstance(e, MtlError):
        raise
      # A checkpoint that failed half-way leaves its temporary directory behind.
      for temporary in self._temporaries():
        shutil.rmtree(temporary, ignore_errors=True)
      latest = tf.train.latest_checkpoint(self.checkpoints)
      kept = (f"the last good checkpoint {os.path.basename(latest)} is intact and a restart "
              f"resumes from it" if latest else "no checkpoint had been written yet")
      raise StorageError(f"could not write {what} ({_reason(e)}); {kept}.") from None

  def write_json(self, path, data, *, what=None):
    """Writes `data` as JSON to `path` via a temporary file and an atomic rename."""
    with self.guarded(what or os.path.relpath(path, self.path)):
      write_json_atomically(path, data, indent=2, sort_keys=True)

  # Config and metrics.

  def read_config(self):
    """The stored config.json as a dict, or None if this is a new directory."""
    if not os.path.exists(self.config_file):
      return None
    return read_json(self.config_file)

  def write_metrics(self, metrics):
    self.write_json(self.metrics_file, metrics)

  # Checkpoints: the object graph lives here and nowhere else.

  def training_checkpoint(self, trainer, best_metric, *, max_to_keep, best_per_task=None):
    """The manager of training checkpoints: the trainer and the best score so far (and each
    task's, if kept: {task: variable}) (the state file recovered first, see the module
    docstring)."""
    self.recover_checkpoint_state(self.checkpoints)
    extra = {"best_per_task": best_per_task} if best_per_task else {}
    checkpoint = tf.train.Checkpoint(trainer=trainer, best_metric=best_metric, **extra)
    return tf.train.CheckpointManager(checkpoint, self.checkpoints, max_to_keep=max_to_keep,
                                      step_counter=trainer.global_step)

  def best_checkpoint(self, model, step_counter, task=None):
    """The manager of the best-on-dev weights (best/), or of one task's (best/TASK/)."""
    directory = self.best if task is None else os.path.join(self.best, task)
    self.recover_checkpoint_state(directory)
    return tf.train.CheckpointManager(tf.train.Checkpoint(model=model), directory,
                                      max_to_keep=1, step_counter=step_counter)

  def recover_checkpoint_state(self, directory):
    """Rewrites `directory`'s state file from the checkpoints on disk when it is missing,
    unreadable or behind them; returns the checkpoints it lists, oldest first."""
    listed = checkpoint_paths(directory)
    on_disk = checkpoints_on_disk(directory)
    if not on_disk or (listed and _number(listed[-1]) >= _number(on_disk[-1])):
      return listed
    state_file = os.path.join(directory, "checkpoint")
    why = ("behind the checkpoints on disk" if listed else
           "unreadable" if os.path.exists(state_file) else "missing")
    logging.warning("%s is %s; rebuilt it from the %d checkpoint(s) there (newest %s).",
                    state_file, why, len(on_disk), os.path.basename(on_disk[-1]))
    # The CheckpointState text proto; the manager keeps (and max_to_keep counts) only the
    # checkpoints whose timestamp is after last_preserved_timestamp.
    names = [os.path.basename(p) for p in on_disk]
    times = [os.path.getmtime(p + ".index") for p in on_disk]
    text = "".join([f'model_checkpoint_path: "{names[-1]}"\n']
                   + [f'all_model_checkpoint_paths: "{n}"\n' for n in names]
                   + [f"all_model_checkpoint_timestamps: {t!r}\n" for t in times]
                   + [f"last_preserved_timestamp: {min(times) - 1.0!r}\n"])
    with self.guarded(f"the checkpoint state file {state_file}"):
      fd, tmp = tempfile.mkstemp(dir=directory, prefix=".checkpoint.")
      with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
      os.replace(tmp, state_file)
    return on_disk

  def restore_model(self, model, which="best"):
    """Restores `model`'s weights from the newest readable checkpoint of best/ ("best"), of
    best/TASK/ ("best/TASK", kept with --best_per_task) (then of checkpoints/, saying so), or
    of checkpoints/ ("latest"). Only reads, and goes by the
    files on disk, not the state file. Returns the checkpoint path; ConfigError when
    none can be read or the checkpoints hold another model."""
    best = self.best if which == "best" else (
        os.path.join(self.best, which.partition("/")[2]) if which.startswith("best/") else None)
    if which.startswith("best/") and not checkpoints_on_disk(best):
      raise ConfigError(f"{self.path} has no checkpoint in {best}: task "
                        f"{which.partition('/')[2]!r}'s best is kept only by a run with "
                        f"--best_per_task that evaluated it.")
    sources = [(best, tf.train.Checkpoint(model=model))] if best else []
    sources.append((self.checkpoints,
                    tf.train.Checkpoint(trainer=tf.train.Checkpoint(model=model))))
    unreadable = []
    for directory, checkpoint in sources:
      for path in reversed(checkpoints_on_disk(directory)):
        problem = readable(path)
        if problem is None:
          mismatch = restore_matched(checkpoint, path)
          if mismatch:  # Read in full, yet not this model's.
            raise ConfigError(f"{path} holds another model than {self.config_file} describes "
                              f"({mismatch}); was the directory's config.json replaced?")
          if unreadable:
            logging.warning("Restored %s instead: %s.", path, "; ".join(unreadable))
          return path
        unreadable.append(f"{path} is unreadable ({problem})")
    if unreadable:
      raise ConfigError(f"No checkpoint of {self.path} can be read: {'; '.join(unreadable)}.")
    raise ConfigError(f"{self.path} has no checkpoint to restore.")


_CHECKPOINT = re.compile(r"^ckpt-(\d+)\.index$")


def _number(path):
  match = re.search(r"ckpt-(\d+)$", path)
  return int(match.group(1)) if match else -1


def checkpoint_paths(directory):
  """The checkpoint prefixes `directory`'s state file lists, oldest first ([] when it is
  missing or unreadable)."""
  try:
    state = tf.train.get_checkpoint_state(directory)
  except (tf.errors.OpError, ValueError, UnicodeDecodeError):
    state = None
  return list(state.all_model_checkpoint_paths) if state else []


def checkpoints_on_disk(directory):
  """The prefixes of the complete-looking checkpoints (ckpt-N.index present) in `directory`,
  by step."""
  try:
    names = os.listdir(directory)
  except OSError:
    return []
  numbers = sorted(int(m.group(1)) for m in map(_CHECKPOINT.match, names) if m)
  return [os.path.join(directory, f"ckpt-{n}") for n in numbers]


def readable(path):
  """None if every tensor of checkpoint `path` can be read, else the first line of why. A
  saved tf.data iterator (a variant) is read when it is restored, not here."""
  try:
    reader = tf.train.load_checkpoint(path)
    for key, dtype in reader.get_variable_to_dtype_map().items():
      if dtype != tf.variant:
        reader.get_tensor(key)
  except (tf.errors.OpError, ValueError, IndexError, OSError) as e:  # IndexError: cut short.
    return _first_line(e)
  return None


def restore_matched(checkpoint, path):
  """Restores `path` into `checkpoint` (a tf.train.Checkpoint); None, or the first line of
  why its objects do not match."""
  try:
    checkpoint.restore(path).expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    return _first_line(e)
  return None


def _first_line(error):
  return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def read_json(path):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    raise ConfigError(f"{path} does not exist; is this a model directory written by "
                      f"mtl-train?") from None
  except (ValueError, UnicodeDecodeError) as e:
    raise DataError(path, None, f"not valid JSON ({e}).") from None
