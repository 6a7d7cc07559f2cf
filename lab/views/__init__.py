"""Views: what the app's pages compute, without Streamlit.

`run_view` folds a run's events into the tables the Live run and Runs pages draw, `history` lays
runs side by side, `compare_view` lays out a comparison group, `data_view` describes a
dataset before training, `playground` shows a model's predictions, `formatting` writes durations
and counts, `estimates` keeps pre-flight estimates computed in the background for pages that
must not wait, `data_map` places training examples by confidence and variability, `class_board` ranks an
assignment's runs, `handout` (with `run_handout`, `comparison_handout`, `handout_charts`) writes a
self-contained HTML page of a lesson, comparison or run (the words come from `lab.catalogue`).
Pages turn widgets into a config, submit it and draw these tables; all of this is testable without a
browser.

May import everything below it (`lab.groups` and down) and the top-level modules. Never `lab.cli`
(the CLI sits above views and prints what the pages show) and never streamlit.
"""
