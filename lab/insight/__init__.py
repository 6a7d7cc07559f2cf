"""Insight: what a run shows of its inside while it trains, gathered from the training itself (no second
pass).

`ranks` reads the rank each AdaLoRA matrix keeps; `projection` draws the head's input vectors of validation
examples in 2-D at each evaluation; `dynamics` records each training example's gold-label probability for
the data map.

May import: `lab.data` and the top-level modules. Never `lab.model` or anything above it.
"""
