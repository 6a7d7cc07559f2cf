"""Groups: runs made together to answer one question. `one_click` holds the Home page's budgets;
`compare` makes the group that compares PEFT methods; `sweep` drives an Optuna study whose trials
are runs (its `--param` grammar in `sweep_params`); `lessons` are experiments that vary one setting,
and `conclusions` draws what their runs measured as `findings` (sentences); `parallel` trains a group's
runs side by side.

May import: `lab.launch`, `lab.runs` and everything below. Never `lab.views` or `lab.cli`.
"""
