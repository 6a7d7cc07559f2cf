"""Groups: runs made together to answer one question. `one_click` holds the Home page's budgets;
`compare` makes the group that compares PEFT methods; `sweep` drives an Optuna study whose trials
are runs.

May import: `lab.launch`, `lab.runs` and everything below. Never `lab.views` or `lab.cli`.
"""
