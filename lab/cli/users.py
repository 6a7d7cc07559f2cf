"""`python -m lab users add | list | remove | passwd`: the accounts of a class on this server.

The first account turns accounts on: the app then asks everyone to log in, and each person sees their
own runs (a teacher sees all). A password is read from standard input (its first line), or asked twice
at a terminal; it is never an argument, so it never lands in the shell's history or `ps`.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from lab.accounts.book import AccountBook
from lab.errors import LabError
from lab.runs.records import ROLES
from lab.runs.store import default_runs_dir


def add_users_command(commands: argparse._SubParsersAction) -> None:
    users = commands.add_parser(
        "users",
        help="Accounts for a class: add, list, remove, passwd (off until the first account exists).",
        description="Accounts for a class on this server. With none, the app needs no login. The password "
        "is read from standard input, or asked at a terminal.",
    )
    actions = users.add_subparsers(dest="users_action", required=True)
    add = actions.add_parser("add", help="Add an account (the first one turns logins on).")
    add.add_argument("name", help="1 to 32 lower-case letters, digits, '.', '_' or '-'.")
    add.add_argument("--role", choices=ROLES, required=True, help="A teacher sees and manages every run.")
    listing = actions.add_parser("list", help="The accounts and their roles.")
    listing.set_defaults(name="")
    remove = actions.add_parser("remove", help="Remove an account and end its sessions (its runs stay).")
    remove.add_argument("name")
    passwd = actions.add_parser("passwd", help="Set a new password; the account's sessions end.")
    passwd.add_argument("name")
    users.set_defaults(handler=cmd_users)


def read_password(name: str) -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"Password for {name}: ")
    if getpass.getpass("Again: ") != first:
        raise LabError("The two passwords differ; nothing changed.")
    return first


def cmd_users(args: argparse.Namespace) -> int:
    book = AccountBook(getattr(args, "runs_dir", None) or default_runs_dir())
    action = args.users_action
    if action == "list":
        accounts = book.accounts()
        if not accounts:
            print("No accounts: the app needs no login. Add one with: python -m lab users add NAME --role teacher")
        for account in accounts:
            print(f"{account.name:<32}  {account.role}")
        return 0
    if action == "remove":
        book.remove(args.name)
        left = len(book.accounts())
        print(f"Removed {args.name}." + ("" if left else " No account is left: the app needs no login again."))
        return 0
    if action == "add":
        first = not book.enabled()
        account = book.add(args.name, args.role, read_password(args.name))
        print(f"Added {account.name} ({account.role})." + (" The app now asks everyone to log in." if first else ""))
        return 0
    book.set_password(args.name, read_password(args.name))
    print(f"New password for {args.name}; their open sessions ended.")
    return 0
