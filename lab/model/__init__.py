"""Model: a pretrained encoder loaded with a fresh head, pooled and adapted with a PEFT method.

`loading` loads the model and tokenizer from a hub id or a folder (one `ModelError` line when it
cannot); `adapting` wraps it with a PEFT method; `pooling` chooses how a classifier pools its tokens;
`anatomy` finds the encoder, head and layers inside a model; `parameters` counts what trains;
`device` picks device and precision; `defaults` holds the rates and pooling an empty field picks;
`testing` builds the tiny models the tests and benchmarks train.

May import: `lab.data` and the top-level modules. Never `lab.training` or anything above it.
"""
