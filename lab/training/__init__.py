"""Training: one run from config to report.

`engine` tells one run from config to report, on the Trainer of `trainer` (which computes the loss)
with the callbacks of `callbacks`; `scoring` scores each evaluation on the user's words, with
`metrics` (classification and entity-level NER); `saving` writes the model and report.json and
`model_card` its card; `memory` measures the run's own peak;
`estimate` predicts time and memory before a run, `pace` the time left during one; `lr_find` is the
learning-rate range test behind `learning_rate: auto`; `trackers`
writes TensorBoard and MLflow; `openmp` releases a thread's idle OpenMP team. What a run returns is
`lab.events.RunResult`.

May import: `lab.model`, `lab.insight`, `lab.data` and the top-level modules. Never anything above.
"""
