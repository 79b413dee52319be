"""The synthetic task set's declaration (entry point `synthetic`): its options and defaults."""

from mtlcore.choices import ARCHITECTURES
from mtlcore.options import Declaration, Option

SYNTHETIC = Declaration(
    factory="mtlcore.synthetic.task_set:SyntheticTaskSet",
    summary="K regression tasks t0..t{K-1} of set correlation on 100 Gaussian inputs "
            "(the MMoE paper's generator)",
    options=(
        Option("num_tasks", "integer", 2, "Tasks t0..t{K-1}; at most --input_dim."),
        Option("correlation", "float", 0.5, "p: each task's weight vector has cosine p with "
               "t0's and p^2 with the others'."),
        Option("input_dim", "integer", 100, "d, the inputs' size."),
        Option("sinusoids", "integer", 10, "m, the sine terms of each label."),
        Option("num_examples", "integer", 8192, "Training examples; dev and test hold 2,048 "
               "each."),
        Option("data_seed", "integer", 0, "Seed of the weight vectors, the sine terms and the "
               "examples (--seed seeds the model)."),
        Option("hidden_size", "integer", 16, "Units of the shared ReLU layer (hard); of each "
               "layer of every column (cross_stitch) and of the shared network (mtan)."),
        Option("architecture", "enum", "hard", "hard: one shared ReLU layer; mmoe: --experts "
               "shared ReLU experts of --expert_size units and a softmax gate per task (Ma et "
               "al. 2018), each gate its task's own; moe: the same experts under one shared "
               "gate (the paper's one-gate baseline); cgc: --shared_experts shared and "
               "--task_experts per task, a gate per task over its own and the shared ones "
               "(Tang et al. 2020); ple: --levels such levels, a shared gate between them; "
               "cross_stitch: a column of --layers ReLU layers per task, mixed by learned "
               "cross-stitch units after each layer (Misra et al. 2016); mtan: --layers shared "
               "ReLU layers, each task's soft-attention mask on each (Liu et al. 2019); "
               "dselect_k: the --experts of mmoe under a DSelect-k gate per task that learns "
               "to weigh at most --selected_experts of them (Hazimeh et al. 2021).",
               choices=ARCHITECTURES),
        Option("experts", "integer", 8, "moe, mmoe, dselect_k: the number of experts "
               "(dselect_k: a power of two)."),
        Option("expert_size", "integer", 16, "moe, mmoe, cgc, ple, dselect_k: units of each "
               "expert."),
        Option("shared_experts", "integer", 1, "cgc, ple: shared experts per level."),
        Option("task_experts", "integer", 1, "cgc, ple: each task's own experts per level."),
        Option("levels", "integer", 2, "ple: extraction levels (cgc is one)."),
        Option("layers", "integer", 2, "cross_stitch: layers of each column; mtan: shared "
               "layers."),
        Option("self_weight", "float", 0.9, "cross_stitch: each unit's initial weight of a "
               "task's own column (the paper's alpha_S); the others share the rest."),
        Option("cross_task_gradients", "boolean", False, "ple: the shared gate passes every "
               "task's loss into the other tasks' lower experts, as in the paper (default: "
               "a task's experts learn from its own loss only)."),
        Option("selected_experts", "integer", 2, "dselect_k: k, the most experts each task's "
               "gate weighs on an example."),
    ),
    run_defaults={"batch_size": 64, "learning_rate": 1e-3, "epochs": 10.0, "clip_norm": 0.0,
                  "eval_every": 0, "lr_decay_start": 1.0, "average_decay": 0.0})
