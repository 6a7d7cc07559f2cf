"""Model: a pretrained encoder loaded with a fresh head, pooled and adapted with a PEFT method.

`loading` loads the model and tokenizer from a hub id or a folder (one `ModelError` line when it
cannot); `adapting` wraps it with a PEFT method; `pooling` chooses how a classifier pools its tokens;
`anatomy` finds the encoder, head and layers inside a model; `parameters` counts what trains;
`device` picks device and precision; `defaults` holds the rates and pooling an empty field picks;
`testing` builds the tiny models the tests and benchmarks train; `lora_check` measures on a model what a
low-rank method promises (step 0 equals the base, merging is exact, r (d_in + d_out) per matrix).

May import: `lab.data` and the top-level modules. Never `lab.training` or anything above it.
"""
