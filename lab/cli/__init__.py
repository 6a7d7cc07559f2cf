"""The command line: `python -m lab train | config | predict | runs | show | cancel | resume | delete`.

`main` parses arguments and dispatches; `flags` holds the flag table and builds the CLI command
equivalent to a config (the app shows it); `train` runs the train / config / predict commands and
prints a live run; `runs` holds the run-store commands. User mistakes (LabError) print one line on
stderr and exit with status 2, never a traceback.

May import everything in `lab` but `lab.views`.
"""
