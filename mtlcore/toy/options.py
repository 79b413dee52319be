"""The toy task set's declaration (entry point `toy`): its options and run defaults."""

from mtlcore.options import Declaration, Option

TOY = Declaration(
    factory="mtlcore.toy.task_set:ToyTaskSet",
    summary="the tutorial: two regression tasks y1, y2 on 10 synthetic inputs",
    options=(
        Option("hidden_size", "integer", 20, "Units of the shared ReLU layer."),
        Option("num_examples", "integer", 4096, "Synthetic training examples."),
        Option("network", "enum", "mtlcore", "Build the same network from mtlcore's layers or "
               "from Keras 3 layers (keras.Sequential trunk, keras Dense heads).",
               choices=("mtlcore", "keras")),
    ),
    run_defaults={"batch_size": 32, "learning_rate": 1e-2, "epochs": 20.0, "clip_norm": 0.0,
                  "eval_every": 0, "lr_decay_start": 1.0, "average_decay": 0.0})
