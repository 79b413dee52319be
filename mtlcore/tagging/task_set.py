"""The tagging task set: any sequence-labelling tasks read from column files.

Each label column the user declares is a task (`--columns=word,pos,chunk,ner` gives pos, chunk
and ner), trained with the tagger of mtlcore.tagging.tagger (one head per task; `crf` and
`reads` say which heads are CRFs and which trunk layer each reads). A column of span tags
(B-/I-/E-/S-TYPE and O) is scored as conlleval does, per type; the others by token
accuracy. Unless `scoring` says, a column is a span column when any training tag of it starts
with B-, I-, E- or S-; from then on every tag of it, in every split, must be a span tag.

Corpora: `train` (and optionally `dev`, `test`) is either one file for every task or
`task:file` for each task (e.g. "pos:a.txt,chunk:b.txt"); tasks naming the same file share
that corpus. A corpus of several tasks is one set of sentences labelled for all of them. In
alternate mode each task draws from its own corpus; in joint mode the training corpora are
merged, and a sentence carries the labels of its own corpus only (the others are missing:
no loss, no gradient, no metric). Without `dev`, each training corpus gives its last sentences
(1,000, or a fifth of smaller files) as its dev split. Relative paths are read under
--data_dir when it is given. The vocabularies are built from every training corpus and kept in
the model directory's assets (`vocab.json`), so a resumed run, mtl-eval and the export use the
ids the checkpoint was trained with.

With `lm_vocab` > 0 the task set also offers the task "lm", the auxiliary language model of
mtlcore.tagging.language_model (the first BiLSTM layer predicts each next and previous word
of the training sentences, over the lm_vocab most frequent words): in joint mode it rides on
every batch, in alternate mode its own stream holds every training sentence. It is trained
only: evaluation, predictions and the export leave it out.

Options (mtlcore.tagging.options.TAGGING): columns, train, dev, test, placeholder (the string
marking a missing label, e.g. "_"), scoring (task:span|accuracy), the fields of TaggerConfig
(trunk, crf, reads, hidden_size ...), buckets (the pipeline's padded lengths), and lm_vocab (0:
no LM task), lm_projection, lm_weight (LanguageModelConfig).
"""

import dataclasses
import os

from mtlcore import task_set
from mtlcore.evaluation import Evaluator
from mtlcore.options import reject_unknown
from mtlcore.task_kinds import Classification
from mtlcore.errors import ConfigError, DataError
from mtlcore.tagging import columns as columns_lib
from mtlcore.tagging import evaluation, export, language_model, pipeline, tagger
from mtlcore.tagging.language_model import LM_TASK
from mtlcore.tagging.options import TAGGING
from mtlcore.tagging.vocab import Featurizer, Vocabularies

VOCABULARY_FILE = "vocab.json"
LM_OPTIONS = {"lm_vocab": "vocab_size", "lm_projection": "projection_size",
              "lm_weight": "weight"}  # option -> LanguageModelConfig field


@dataclasses.dataclass(frozen=True)
class Corpus:
  """The sentences of one file, labelled for the tasks that file was given for."""
  path: str
  tasks: tuple
  sentences: list


@dataclasses.dataclass(frozen=True)
class TaggingData:
  """splits: {"train"/"dev"/"test": [Corpus]}, each task in one corpus of each split;
  scoring: {task: "span" or "accuracy"}."""
  splits: dict
  scoring: dict

  def corpus(self, split, task):
    return next(c for c in self.splits[split] if task in c.tasks)

  def sentences(self, split, tasks):
    """The sentences of every corpus of `split` that holds one of `tasks`, merged."""
    return [s for c in self.splits[split] if set(c.tasks) & set(tasks) for s in c.sentences]


def _as_list(name, value):
  if isinstance(value, str):
    value = [v for v in value.split(",") if v]
  if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
    raise ConfigError(f"--{name} must be a comma-separated list, got {value!r}.")
  return [v.strip() for v in value]


def parse_task_map(name, value, convert=str):
  """"k:v,k:v" (or a list of "k:v", or a dict) -> {k: convert(v)}; ConfigError naming
  --`name` for an item that is not TASK:VALUE or a value `convert` rejects."""
  if isinstance(value, dict):
    items = list(value.items())
  else:
    items = []
    for item in _as_list(name, value):
      key, sep, text = item.partition(":")
      if not sep or not key or not text:
        raise ConfigError(f"--{name} takes TASK:VALUE items, got {item!r}.")
      items.append((key, text))
  try:
    return {k: convert(v) for k, v in items}
  except (TypeError, ValueError):
    raise ConfigError(f"--{name}: values must be {convert.__name__}, got {value!r}.") from None


def parse_files(name, spec, tasks):
  """`--train`-style spec -> {task: path}: one path for every task, or task:path for each."""
  if not spec:
    return {}
  if isinstance(spec, str) and "," not in spec and spec.partition(":")[0] not in tasks:
    prefix, sep, _ = spec.partition(":")
    if sep and prefix.isidentifier():  # TASK:FILE of a task that is not declared.
      raise ConfigError(f"--{name}={spec}: {prefix!r} is not a task; the tasks are "
                        f"{list(tasks)} (a file whose name holds ':' can be given as "
                        f"./{spec}).")
    return {t: spec for t in tasks}
  files = parse_task_map(name, spec)
  unknown = sorted(set(files) - set(tasks))
  missing = [t for t in tasks if t not in files]
  if unknown or missing:
    raise ConfigError(f"--{name} must give one file for every task {list(tasks)} or task:file "
                      f"for each; unknown {unknown}, missing {missing}.")
  return files


class TaggingTaskSet(task_set.TaskSet):
  """Tasks from the label columns of column files; see the module docstring."""

  name = "tagging"
  option_schema = TAGGING.options
  defaults = TAGGING.run_defaults
  file_options = ("columns", "train", "dev", "test", "placeholder", "scoring",
                  "sentence_tasks", "sentence_pooling")
  evaluation_options = ("dev", "test")  # mtl-eval may score other files of the same columns.
  sentence_tasks = ()  # Tasks labelled per sentence (--sentence_tasks).
  sentence_pooling = "mean"

  def __init__(self, options, *, eval_batch_size=128):
    reject_unknown(self.name, options, self.option_schema)
    options = dict(options)
    self._init_files(options)
    self.label_tasks = self.task_names  # Token tasks, then sentence tasks.
    self.token_tasks = tuple(t for t in self.task_names if t not in self.sentence_tasks)
    self.lm = self._lm_config(options)
    self.buckets = pipeline.check_buckets(options.pop("buckets", pipeline.DEFAULT_BUCKETS))
    for key, kind in (("crf", None), ("reads", int)):
      if key in options:
        options[key] = (_as_list(key, options[key]) if kind is None
                        else parse_task_map(key, options[key], kind))
        unknown = sorted(set(options[key]) - set(self.token_tasks))
        if unknown:
          raise ConfigError(f"--{key} names unknown task(s) {unknown}; the token tasks are "
                            f"{list(self.token_tasks)}.")
    if self.lm is not None and options.get("trunk") == "conv":
      options.setdefault("directional_first_layer", True)
    self.config = tagger.TaggerConfig(**options)
    if self.lm is not None:
      if self.config.trunk == "conv" and not self.config.directional_first_layer:
        raise ConfigError("--lm_vocab with --trunk=conv needs directional_first_layer (the "
                          "default then): a centred window sees the words the task predicts.")
      self.task_names = (*self.label_tasks, LM_TASK)
    self.eval_batch_size = eval_batch_size
    self.scoring = dict(self.declared_scoring)
    self.vocabularies = self.featurizer = None
    self._predictors, self._predictor_model = {}, None
    self._engines = {}  # (id(model), tasks) -> (model, Evaluator, its DecodedScores)

  def _lm_config(self, options):
    """The LanguageModelConfig the lm_* options (popped from `options`) give, or None when
    lm_vocab is 0 or unset."""
    given = {field: options.pop(option) for option, field in LM_OPTIONS.items()
             if option in options}
    if not given.get("vocab_size"):
      stray = [option for option, field in LM_OPTIONS.items() if field in given and
               field != "vocab_size"]
      if stray:
        raise ConfigError(f"--{stray[0]} applies only with the language-model task; set "
                          f"--lm_vocab > 0 or drop it.")
      return None
    if LM_TASK in self.label_tasks:
      raise ConfigError(f"--columns names a column {LM_TASK!r}, the name of the language-model "
                        f"task --lm_vocab adds; rename the column.")
    return language_model.LanguageModelConfig(**given)

  def _init_files(self, options):
    """Reads the file options out of `options` (a dict it pops from)."""
    self.columns = tuple(_as_list("columns", options.pop("columns", ())))
    if self.columns.count(columns_lib.WORD) != 1 or len(set(self.columns)) != len(self.columns):
      raise ConfigError(f"--columns must name each column once, one of them "
                        f"'{columns_lib.WORD}', got {list(self.columns)}.")
    self.task_names = tuple(c for c in self.columns if c != columns_lib.WORD)
    if not self.task_names:
      raise ConfigError("--columns must name at least one label column besides 'word'.")
    self.sentence_tasks = tuple(_as_list("sentence_tasks", options.pop("sentence_tasks", None)
                                         or ()))
    self.sentence_pooling = options.pop("sentence_pooling", "mean") or "mean"
    bad = [t for t in self.sentence_tasks if not t.isidentifier() or t in self.columns
           or t == LM_TASK]
    if bad or len(set(self.sentence_tasks)) != len(self.sentence_tasks):
      raise ConfigError(f"--sentence_tasks must name new tasks, each once (identifiers, not a "
                        f"column nor {LM_TASK!r}), got {list(self.sentence_tasks)}.")
    self.task_names += self.sentence_tasks
    self.files = {split: parse_files(split, options.pop(split, None), self.task_names)
                  for split in ("train", "dev", "test")}
    if not self.files["train"]:
      raise ConfigError("--train is required: a column file, or task:file for each task.")
    self.placeholder = options.pop("placeholder", None) or None
    self.declared_scoring = parse_task_map("scoring", options.pop("scoring", {}))
    for task, kind in self.declared_scoring.items():
      if task not in self.task_names or task in self.sentence_tasks or (
          kind not in evaluation.SCORINGS):
        raise ConfigError(f"--scoring takes TASK:KIND with a task of {list(self.task_names)} "
                          f"and a kind of {list(evaluation.SCORINGS)}, got {task}:{kind}.")

  # What the engine reads.

  @property
  def splits(self):
    return ("dev", "test") if self.files["test"] else ("dev",)

  @property
  def selection(self):
    """Span F1 before accuracy; among equals, later columns (higher-level tasks) first."""
    order = sorted(reversed(self.label_tasks), key=lambda t: self.scoring.get(t) != "span")
    return tuple(f"{t}/f1" if self.scoring.get(t) == "span" else f"{t}/accuracy"
                 for t in order)

  def is_detail_metric(self, key):
    """The per-type span F1 scores (TASK_f1_by_type/TYPE) are details."""
    return "_f1_by_type/" in key

  def options(self):
    return {"columns": list(self.columns),
            **{split: dict(files) for split, files in self.files.items()},
            "placeholder": self.placeholder, "scoring": dict(self.declared_scoring),
            "sentence_tasks": list(self.sentence_tasks) or None,
            "sentence_pooling": self.sentence_pooling,
            **dataclasses.asdict(self.config), "crf": list(self.config.crf),
            "buckets": list(self.buckets), **self._lm_options()}

  def _lm_options(self):
    if self.lm is None:
      return {"lm_vocab": 0}
    return {option: getattr(self.lm, field) for option, field in LM_OPTIONS.items()}

  # Data.

  def _path(self, path, data_dir):
    return os.path.join(data_dir, path) if data_dir and not os.path.isabs(path) else path

  def _read(self, files, data_dir, span_tasks):
    """[Corpus] of {task: path}, one per distinct path."""
    by_path = {}
    for task, path in files.items():
      by_path.setdefault(path, []).append(task)
    corpora = []
    for path, tasks in by_path.items():
      full = self._path(path, data_dir)
      corpora.append(Corpus(full, tuple(tasks), columns_lib.read_column_file(
          full, columns=self.columns, tasks=tasks, placeholder=self.placeholder,
          span_tasks=[t for t in tasks if t in span_tasks],
          sentence_tasks=self.sentence_tasks)))
    return corpora

  def _check_labelled(self, corpora, split):
    for corpus in corpora:
      for task in corpus.tasks:
        if task in self.sentence_tasks:
          if not any(task in s.sentence_labels for s in corpus.sentences):
            raise DataError(corpus.path, None, f"no sentence label of task {task!r} in the "
                            f"{split} split (a line '# {task} = LABEL' before a sentence).")
        elif not any(t is not None for s in corpus.sentences for t in s.tags.get(task, ())):
          raise DataError(corpus.path, None, f"no label of task {task!r} in the {split} split "
                          f"(its column is missing or only placeholders).")

  def _scoring(self, corpora):
    """Declared scoring, else span for columns whose tags look like span tags; re-reads a
    file (naming the bad line) when a span column holds a tag that is not one."""
    scoring = dict(self.declared_scoring)
    for corpus in corpora:
      for task in corpus.tasks:
        if task in scoring or task in self.sentence_tasks:
          continue
        tags = {t for s in corpus.sentences for t in s.tags.get(task, ()) if t is not None}
        scoring[task] = evaluation.SPAN if columns_lib.looks_like_span_column(tags) else (
            evaluation.ACCURACY)
        if scoring[task] == evaluation.SPAN and not all(map(columns_lib.is_span_tag, tags)):
          columns_lib.read_column_file(corpus.path, columns=self.columns, tasks=corpus.tasks,
                                       placeholder=self.placeholder, span_tasks=[task])
    return scoring

  def load_data(self, data_dir):
    explicit = [t for t, k in self.declared_scoring.items() if k == evaluation.SPAN]
    splits = {"train": self._read(self.files["train"], data_dir, explicit)}
    self.scoring = self._scoring(splits["train"])
    spans = [t for t, k in self.scoring.items() if k == evaluation.SPAN]
    if self.files["dev"]:
      splits["dev"] = self._read(self.files["dev"], data_dir, spans)
    else:
      splits["train"], splits["dev"] = self._carve_dev(splits["train"])
    if self.files["test"]:
      splits["test"] = self._read(self.files["test"], data_dir, spans)
    for split, corpora in splits.items():
      self._check_labelled(corpora, split)
    return TaggingData(splits, self.scoring)

  def _carve_dev(self, corpora):
    train, dev = [], []
    for c in corpora:
      n = columns_lib.dev_size(len(c.sentences))
      if n == 0:
        raise DataError(c.path, None, "needs at least 2 sentences (one to train, one for dev), "
                        "or give --dev.")
      train.append(dataclasses.replace(c, sentences=c.sentences[:-n]))
      dev.append(dataclasses.replace(c, sentences=c.sentences[-n:]))
    return train, dev

  def _vocabularies(self, assets_dir, data):
    """The vocabularies kept in assets_dir, or new ones built from the training split (with
    the LM task's words, when it is on and they are missing: e.g. copied by --init_from from a
    run without it)."""
    path = os.path.join(assets_dir, VOCABULARY_FILE)
    kept = Vocabularies.load(path) if os.path.exists(path) else None
    if kept is not None and (self.lm is None or LM_TASK in kept.tags or data is None):
      return kept
    if data is None:
      raise ConfigError(f"{path} does not exist; is this a model directory written by "
                        f"mtl-train?")
    sentences = self._training_sentences(data)  # Read once for both vocabularies.
    vocabularies = kept if kept is not None else Vocabularies.build(
        sentences, self.token_tasks, sentence_tasks=self.sentence_tasks)
    if self.lm is not None:
      words = language_model.frequent_words(sentences, self.lm.vocab_size)
      vocabularies = dataclasses.replace(vocabularies, tags={**vocabularies.tags, LM_TASK: words})
    vocabularies.save(path)
    return vocabularies

  def _training_sentences(self, data, tasks=None):
    """The training sentences of every corpus holding labels of one of `tasks` (default, or
    with the LM task among them: every corpus, all of which the LM task learns from)."""
    if not tasks or LM_TASK in tasks:
      tasks = self.label_tasks
    return data.sentences("train", tasks)

  # The model.

  def build_model(self, tasks, *, seed, assets_dir, data=None):
    return self.build_model_for(tasks, self._vocabularies(assets_dir, data), seed=seed)

  def build_model_for(self, tasks, vocabularies, *, seed):
    """The tagger for `tasks` over given vocabularies (mtl-bench uses synthetic ones)."""
    self.vocabularies, self.featurizer = vocabularies, Featurizer(vocabularies)
    missing = [t for t in tasks if t not in vocabularies.tags]
    if missing:
      raise ConfigError(f"the vocabularies have no tags for task(s) {missing}.")
    single = [t for t in tasks if t in self.sentence_tasks and len(vocabularies.tags[t]) < 2]
    if single:
      raise ConfigError(f"sentence task(s) {single}: the training sentences hold fewer than 2 "
                        f"labels; there is nothing to classify.")
    extra = {t: Classification(self._classes(vocabularies, t), pooling=self.sentence_pooling)
             .head(reads=self.config.layer_read_by(t), input_size=self.config.size_read_by(t),
                   seed=seed + 3000 + i, name=f"{t}_head")
             for i, t in enumerate(tasks) if t in self.sentence_tasks}
    if LM_TASK in tasks:
      extra[LM_TASK] = language_model.LanguageModelHead(
          self.config.hidden_size, len(vocabularies.tags[LM_TASK]), self.lm, seed=seed + 2000,
          name=f"{LM_TASK}_head")
    return tagger.build_tagger(
        self.config, num_words=self.featurizer.num_words, num_chars=self.featurizer.num_chars,
        num_tags={t: len(vocabularies.tags[t]) for t in tasks
                  if t != LM_TASK and t not in self.sentence_tasks}, seed=seed,
        extra_heads=extra)

  @staticmethod
  def _classes(vocabularies, task):
    """A sentence task's number of classes: its training labels (labels seen only in held-out
    data get an id past them, which the kind treats as missing)."""
    return len(vocabularies.tags[task])

  def make_tasks(self, model, tasks):
    # The LM head has a loss and metrics like a tagging head; its unit is the token too
    # (throughput stays in tokens/s), while its loss is normalised by the words it predicts.
    # A sentence task is a Classification (mtlcore.task_kinds), counting sentences.
    made = {t.name: t for t in tagger.tagging_tasks(
        model, [t for t in tasks if t not in self.sentence_tasks])}
    made.update({t: Classification(self._classes(self.vocabularies, t)).task(t)
                 for t in tasks if t in self.sentence_tasks})
    return [made[t] for t in tasks]

  def _stream(self, sentences, tasks, batch_size, seed):
    if LM_TASK in tasks:
      sentences = language_model.with_word_labels(sentences)

    def make_dataset(start):
      return pipeline.training_dataset(
          sentences, featurizer=self.featurizer, vocabularies=self.vocabularies, tasks=tasks,
          batch_size=batch_size, seed=seed, buckets=self.buckets, start=start,
          sentence_tasks=self.sentence_tasks)
    return task_set.Stream(make_dataset, pipeline.steps_per_epoch(
        sentences, batch_size=batch_size, buckets=self.buckets))

  def joint_dataset(self, data, tasks, *, batch_size, seed):
    """The training corpora of `tasks`, merged; each sentence keeps its own corpus' labels."""
    return self._stream(self._training_sentences(data, tasks), tuple(tasks), batch_size, seed)

  def task_dataset(self, data, task, *, batch_size, seed):
    sentences = (self._training_sentences(data) if task == LM_TASK
                 else data.corpus("train", task).sentences)
    return self._stream(sentences, (task,), batch_size, seed)

  # Evaluation and export.

  def _predict(self, model, data, tasks, split):
    """[(corpus, its trained tasks, {task: predicted tags per sentence})] of `split`."""
    if self._predictor_model is not model:
      self._predictors, self._predictor_model = {}, model
    out = []
    for corpus in data.splits[split]:
      own = tuple(t for t in tasks if t in corpus.tasks)
      if not own:
        continue
      if own not in self._predictors:
        self._predictors[own] = evaluation.TagPredictor(
            model, self.featurizer, self.vocabularies, tasks=own,
            batch_size=self.eval_batch_size, buckets=self.buckets,
            sentence_tasks=self.sentence_tasks)
      out.append((corpus, own, self._predictors[own].predict(corpus.sentences)))
    return out

  def evaluate(self, model, data, tasks, split):
    """{TASK/METRIC: value} of `tasks` on `split`, by the engine's evaluation
    (mtlcore.evaluation): each corpus batch by batch, keeping only summed counts. A token
    task is scored on its decoded tags (evaluation.DecodedScores: accuracy, and conlleval's
    precision, recall, F1 and F1 per type for a span column, in percent); a sentence task by
    its own metrics (accuracy, macro-F1, fractions)."""
    result = {}
    for corpus in data.splits[split]:
      own = tuple(t for t in tasks if t in corpus.tasks)
      if not own:
        continue
      evaluator, scorers = self._engine(model, data, own)
      for scorer in scorers:
        scorer.sentences = corpus.sentences
      result.update(evaluator(pipeline.eval_dataset(
          corpus.sentences, featurizer=self.featurizer, vocabularies=self.vocabularies,
          tasks=own, batch_size=self.eval_batch_size, buckets=self.buckets,
          sentence_tasks=self.sentence_tasks)))
    return result

  def _engine(self, model, data, tasks):
    """(the Evaluator of `tasks`, their DecodedScores), built once per model and tasks."""
    key = (id(model), tasks)
    if key not in self._engines:
      made = {t.name: t for t in self.make_tasks(model, tasks)}
      scorers = []
      for t in tasks:
        if t in self.sentence_tasks:
          continue
        span = data.scoring.get(t) == evaluation.SPAN
        types = {evaluation.span_type(tag) for tag in self.vocabularies.tags[t]} | {
            evaluation.span_type(tag) for corpora in data.splits.values() for c in corpora
            if t in c.tasks for s in c.sentences for tag in s.labels(t) if tag is not None}
        scorer = evaluation.DecodedScores(t, model.heads[t], self.vocabularies.tags[t],
                                          span=span, types=types - {None})
        scorers.append(scorer)
        made[t] = dataclasses.replace(made[t], metrics={}, eval_metrics={"scores": scorer})
      self._engines[key] = (model, Evaluator(model, [made[t] for t in tasks],
                                                with_loss=False), scorers)
    return self._engines[key][1:]

  def write_predictions(self, model, data, tasks, split, path):
    """Into directory `path`, one file per task, TASK.txt: conlleval's input, `word gold
    pred` per token and a blank line after each sentence, for the sentences fully labelled for
    the task; for a sentence task, `gold pred` per sentence that has a gold label."""
    for corpus, own, predictions in self._predict(model, data, tasks, split):
      for task in own:
        if task in self.sentence_tasks:
          with open(os.path.join(path, f"{task}.txt"), "w", encoding="utf-8") as f:
            f.writelines(f"{s.sentence_labels[task]} {p}\n"
                         for s, p in zip(corpus.sentences, predictions[task])
                         if task in s.sentence_labels)
          continue
        with open(os.path.join(path, f"{task}.txt"), "w", encoding="utf-8") as f:
          for sentence, predicted in zip(corpus.sentences, predictions[task]):
            if sentence.fully_labelled(task):
              f.writelines(" ".join(row) + "\n" for row in zip(
                  sentence.words, sentence.tags[task], predicted))
              f.write("\n")

  def export_problem(self, tasks):
    if not [t for t in tasks if t != LM_TASK]:
      return f"the {LM_TASK!r} task alone has nothing to serve (train a tagging task too)"
    return None

  def export(self, model, tasks, export_dir):
    """Serves the tagging tasks of `tasks`; the LM task's head is not exported."""
    served = [t for t in tasks if t != LM_TASK]
    return export.export_tagger(export_dir, model.with_tasks(served), self.featurizer,
                                self.vocabularies, served, atomically=False,
                                sentence_tasks=self.sentence_tasks)
