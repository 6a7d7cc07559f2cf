"""The command line: `python -m lab train | compare | lesson | sweep | config | predict | runs | show |
cancel | resume | delete | export | push | handout | users | assignment`.

`main` parses arguments and dispatches; `flags` holds the flag table and builds the CLI command
equivalent to a config (the app shows it); `train` runs the train / compare / config / predict commands;
`terminal` draws a live run and stops a group on a signal; `sweep` and `lesson` run those groups; `runs`
holds the run-store commands; `users` the accounts; `assignment` a class's assignments (publish, list,
close); `acting` whom a command acts as (`--as NAME`) and in which runs folder. User mistakes (LabError)
print one line on stderr and exit with status 2, never a traceback.

May import everything in `lab`: it sits on top, and `handout` writes what a page shows.
"""
