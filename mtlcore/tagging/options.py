"""The tagging and conll2000 task sets' declarations: options, defaults, factories (no TF).

The defaults of the model options are TaggerConfig's and LanguageModelConfig's
(tests/tagging/test_tagging_options.py pins them equal).
"""

from mtlcore.choices import ARCHITECTURES
from mtlcore.options import Declaration, Option, replace_defaults

# The tagger (tagger.py) and the pipeline (pipeline.py) import these from here.
TRUNKS = ("bilstm", "conv")
DEFAULT_BUCKETS = (12, 24, 36, 52, 80)

FILE_OPTIONS = (
    Option("columns", "list", None, "The column files' columns, in order; 'word' is the "
           "token, every other column a task's labels (e.g. word,pos,chunk,ner)."),
    Option("train", "string", None, "Training data: one column file for every task, or "
           "TASK:FILE for each (e.g. pos:a.txt,chunk:b.txt: one corpus per task)."),
    Option("dev", "string", None, "Dev data, as --train; default: the last sentences of each "
           "training file (1,000, or a fifth of smaller files)."),
    Option("test", "string", None, "Test data, as --train (optional)."),
    Option("placeholder", "string", None, "The label that marks a missing label in a column "
           "(e.g. _): no loss, no gradient, no metric for that token."),
    Option("scoring", "list", None, "TASK:span (conlleval F1 per type) or TASK:accuracy; "
           "default: span for columns whose tags start with B-, I-, E- or S-."),
    Option("sentence_tasks", "list", None, "Tasks labelled per sentence by a line "
           "'# NAME = LABEL' before the sentence (e.g. topic): classified from the pooled "
           "top trunk layer, scored by accuracy and macro-F1."),
    Option("sentence_pooling", "enum", "mean", "How a sentence task pools the tokens' "
           "vectors.", choices=("mean", "max", "attention")),
)

MODEL_OPTIONS = (
    Option("trunk", "enum", "bilstm", "The shared trunk.", choices=TRUNKS),
    Option("crf", "list", (), "Tasks whose head is a linear-chain CRF (--crf= for none)."),
    Option("reads", "list", (), "TASK:LAYER, the trunk layer (1 = first) a task's head reads; "
           "the others read the top (--reads= for all top)."),
    Option("word_dim", "integer", 100, "Word embedding size."),
    Option("char_dim", "integer", 32, "Character embedding size."),
    Option("char_filters", "integer", 64, "Character CNN filters."),
    Option("char_width", "integer", 3, "Character CNN window, in characters."),
    Option("hidden_size", "integer", 128, "BiLSTM units per direction (conv: 2x filters)."),
    Option("num_layers", "integer", 2, "Trunk layers, >= 2."),
    Option("conv_width", "integer", 5, "Window of the conv trunk's layers, in tokens."),
    Option("directional_first_layer", "boolean", False, "Conv trunk: the first layer's "
           "filters half causal, half anti-causal (default true with --lm_vocab)."),
    Option("dropout", "float", 0.5, "Dropout rate on the embeddings and after every trunk "
           "layer."),
    Option("word_dropout", "float", 0.1, "Probability of replacing a training word by the "
           "unknown word."),
    Option("buckets", "integers", DEFAULT_BUCKETS, "The pipeline's padded sentence lengths."),
    Option("architecture", "enum", "hard", "hard: every trunk layer shared. Otherwise the top "
           "layer becomes, over each token's state in the layer below, mmoe: --experts shared "
           "experts and a softmax gate per task (Ma et al. 2018); moe: one shared gate; cgc: "
           "--shared_experts shared and --task_experts per task, a gate per task (Tang et "
           "al. 2020); ple: --levels such levels; cross_stitch: a column of --mixture_layers "
           "layers per task joined by cross-stitch units (Misra et al. 2016); mtan: "
           "--mixture_layers shared layers with a soft-attention mask per task (Liu et al. "
           "2019); dselect_k: --experts shared experts under a DSelect-k gate per task that "
           "learns to weigh at most --selected_experts of them (Hazimeh et al. 2021). "
           "Experts, columns and masks are per-token ReLU layers of --expert_size "
           "units; the tasks reading the top read their own representation.",
           choices=ARCHITECTURES),
    Option("experts", "integer", 4, "moe, mmoe, dselect_k: the number of experts "
           "(dselect_k: a power of two)."),
    Option("expert_size", "integer", 0, "Units of each expert, column layer or attention "
           "layer; 0: the trunk's output size (2 x --hidden_size)."),
    Option("shared_experts", "integer", 1, "cgc, ple: shared experts per level."),
    Option("task_experts", "integer", 1, "cgc, ple: each task's own experts per level."),
    Option("levels", "integer", 2, "ple: extraction levels (cgc is one)."),
    Option("mixture_layers", "integer", 1, "cross_stitch: layers of each column; mtan: "
           "attended layers."),
    Option("self_weight", "float", 0.9, "cross_stitch: each unit's initial weight of a "
           "task's own column (the paper's alpha_S)."),
    Option("cross_task_gradients", "boolean", False, "ple: the shared gates pass every "
           "task's loss into the other tasks' lower experts, as in the paper."),
    Option("selected_experts", "integer", 2, "dselect_k: k, the most experts each task's "
           "gate weighs on a token."),
    Option("lm_vocab", "integer", 0, ">0 adds the auxiliary language-model task 'lm' (the "
           "first BiLSTM layer predicts the next and the previous word, over this many most "
           "frequent training words plus an unknown class); 0: none."),
    Option("lm_projection", "integer", 64, "The LM task's tanh layer between a direction's "
           "state and its softmax."),
    Option("lm_weight", "float", 0.1, "The LM task's loss multiplier."),
)

RUN_DEFAULTS = {"batch_size": 32, "learning_rate": 2e-3, "epochs": 24.0, "clip_norm": 5.0,
                "eval_every": 1000, "lr_decay_start": 0.33, "average_decay": 0.0}

TAGGING = Declaration(
    factory="mtlcore.tagging.task_set:TaggingTaskSet",
    summary="sequence labelling, one task per label column of your column files; relative "
            "--train/--dev/--test files are read under --data_dir",
    options=FILE_OPTIONS + MODEL_OPTIONS, run_defaults=RUN_DEFAULTS)

# The tuned CoNLL-2000 model (mtlcore.tagging.conll2000_task_set): a CRF chunk head, a POS
# head on the first trunk layer, the auxiliary LM over the 2,000 most frequent words.
CONLL2000 = Declaration(
    factory="mtlcore.tagging.conll2000_task_set:Conll2000TaskSet",
    summary="POS tagging (pos) and chunking (chunk) on CoNLL-2000; --data_dir: a directory "
            "with train.txt(.gz) and test.txt(.gz), default $MTL_DATA_DIR, else a verified "
            "download",
    options=replace_defaults(MODEL_OPTIONS, crf=("chunk",), reads=("pos:1",), lm_vocab=2000),
    run_defaults=RUN_DEFAULTS, default=True)
