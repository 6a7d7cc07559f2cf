"""Fine-Tuning Lab: supervised fine-tuning of pretrained transformers for text and token classification.

Importing `lab` decides offline mode before transformers or datasets load (see lab.hub).
"""

import warnings

from lab.hub import configure_offline_mode

configure_offline_mode()
# peft 0.21 reads `model.is_gradient_checkpointing` whenever it wraps or loads an adapter, and
# transformers 5 deprecates it with a FutureWarning: noise on every run that the user cannot act on.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

__all__ = ["configure_offline_mode"]
