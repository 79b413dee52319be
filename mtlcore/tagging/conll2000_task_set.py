"""The CoNLL-2000 task set: POS tagging and chunking, an instance of the tagging task set.

The columns are fixed (`word pos chunk`): "pos" is scored by accuracy and "chunk" by conlleval
F1. The train and test files are found by mtlcore.tagging.conll2000 (a directory, $MTL_DATA_DIR,
or a verified download); dev is the last 1,000 sentences of the training file. The defaults
are the tuned CoNLL-2000 ones: a CRF chunk head, a POS head that reads the first trunk layer
(Søgaard & Goldberg 2016) and the auxiliary language-model task over the 2,000 most frequent
training words (Rei 2017; `lm_vocab=0` turns it off), 24 epochs (README, "the default run":
what the dev split said, within the time budget).

Options: the fields of TaggerConfig (trunk, crf, reads, word_dim, hidden_size, ...),
`buckets` and the lm_* options of the tagging task set.
"""

from mtlcore.tagging import conll2000, evaluation
from mtlcore.tagging.options import CONLL2000
from mtlcore.tagging.task_set import Corpus, TaggingData, TaggingTaskSet

# Where CONLL2000's declared defaults differ from the tagging task set's (one place: options.py).
TAGGER_DEFAULTS = {name: CONLL2000.option(name).default for name in ("crf", "reads", "lm_vocab")}


class Conll2000TaskSet(TaggingTaskSet):
  """POS tagging ("pos") and chunking ("chunk") on CoNLL-2000."""

  name = "conll2000"
  option_schema = CONLL2000.options
  file_options = ()
  evaluation_options = ()
  splits = ("dev", "test")

  def __init__(self, options, *, eval_batch_size=128):
    super().__init__({**TAGGER_DEFAULTS, **options}, eval_batch_size=eval_batch_size)

  def _init_files(self, options):
    del options
    self.columns, self.task_names = conll2000.COLUMNS, conll2000.TASKS
    self.files = {"train": {}, "dev": {}, "test": {}}
    self.placeholder = None
    self.declared_scoring = {"pos": evaluation.ACCURACY, "chunk": evaluation.SPAN}

  def options(self):
    return {k: v for k, v in super().options().items()
            if k not in TaggingTaskSet.file_options}

  def load_data(self, data_dir):
    splits = conll2000.load_splits(data_dir)
    corpus = lambda path, sentences: [Corpus(path, self.label_tasks, sentences)]
    return TaggingData({"train": corpus(splits.train_path, splits.train),
                        "dev": corpus(splits.train_path, splits.dev),
                        "test": corpus(splits.test_path, splits.test)}, dict(self.scoring))
