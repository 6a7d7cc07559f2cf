"""Accounts: a class on one server. Off until the first account exists (`python -m lab users add`).

`book` keeps the accounts (teacher or student, argon2-hashed passwords), their sessions and the
failed-login limit in `accounts.db` beside the run store. Who may see and change which run is
`lab.runs.records.Viewer`, applied by a store handle `RunStore.seen_by(viewer)`.

May import: the top-level modules and `lab.runs`. Never `lab.launch` or anything above.
"""
