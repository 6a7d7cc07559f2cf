"""Publish: what leaves the lab. `export` writes ONNX checked with onnxruntime; `push` sends a model
folder to the Hugging Face hub; `standalone` writes a run's config as a script without the lab.

May import: `lab.inference`, `lab.training`, `lab.model`, `lab.data` and the top-level modules.
Never `lab.runs` or anything above.
"""
