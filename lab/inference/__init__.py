"""Inference: using a trained model. `predict` loads a saved model or adapter and labels new text;
`explain` attributes a prediction to the input words (integrated gradients).

May import: `lab.model`, `lab.data` and the top-level modules. Never `lab.publish` or anything above.
"""
