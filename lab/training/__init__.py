"""Training: a model from a config, trained, scored and used.

`modeling` loads the pretrained encoder with a new head and wraps it with a PEFT method, `engine`
runs one training run (the Trainer with the lab's callbacks) and writes its report, `metrics`
scores classification and entity-level NER, `estimate` predicts time and memory before a run,
`predict` uses a saved model, `openmp` releases a thread's idle OpenMP team, and `testing` builds
the tiny models the tests and benchmarks train.

May import: `lab.data` and the top-level modules. Never `lab.runs`, `lab.views` or `lab.cli`.
"""
