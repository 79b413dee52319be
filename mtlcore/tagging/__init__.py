"""Sequence labelling: the application mtlcore ships (POS tagging and chunking on CoNLL-2000).

  options.py       the task sets' declarations (entry points `tagging`, `conll2000`), no TF
  columns.py       column files: one token per line, a blank line between sentences
  conll2000.py     the CoNLL-2000 corpus: found, downloaded and verified
  vocab.py         vocabularies and the in-graph featurizer
  pipeline.py      bucketed tf.data streams of sentences
  tagger.py        the tagger network (character CNN, BiLSTM or conv trunk, token heads)
  crf.py           the linear-chain CRF head's math
  language_model.py  the auxiliary language-model task
  conlleval.py     conlleval's span scorer and token accuracy
  evaluation.py    predicting tags and scoring them
  export.py        the SavedModel mtl-tag serves
  task_set.py      the `tagging` task set; conll2000_task_set.py its CoNLL-2000 instance

The engine knows none of it: it reaches this package through the entry points only.
"""
