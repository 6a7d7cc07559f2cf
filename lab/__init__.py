"""Fine-Tuning Lab: supervised fine-tuning of pretrained transformers for text and token classification.

Importing `lab` decides offline mode before transformers or datasets load (see lab.hub).
"""
from lab.hub import configure_offline_mode

configure_offline_mode()

__all__ = ["configure_offline_mode"]
