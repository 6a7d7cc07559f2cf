"""Training: a model from a config, trained, scored and used.

`modeling` loads the pretrained encoder with a new head, sets up its pooling and wraps it with a
PEFT method; `defaults` holds the learning rate and pooling an empty field picks; `engine` tells one
run from config to report, on the Trainer of `trainer` (which computes the loss) with the callbacks
of `callbacks`; `scoring` scores each evaluation on the user's words, with `metrics` (classification
and entity-level NER); `saving` writes the model and report.json; `result` is what a run returns; `memory` measures the run's own
peak; `estimate` predicts time and memory before a run; `predict` uses a saved model; `openmp`
releases a thread's idle OpenMP team; `testing` builds the tiny models the tests and benchmarks train.

May import: `lab.data` and the top-level modules. Never `lab.runs`, `lab.views` or `lab.cli`.
"""
