"""`pharmgpt admin promote USERNAME`: the admin service from the command line (no acting user).

On the embedded stack it never creates an empty database, starts the stack if needed and
stops it again afterwards if it was not running before (pharmgpt/wiring.py).
"""

from __future__ import annotations

import argparse
import asyncio


def add_commands(sub) -> None:
    adm = sub.add_parser("admin", help="administration from the command line")
    adm_sub = adm.add_subparsers(dest="admin_command", required=True)
    adm_sub.add_parser("promote", help="make an existing account an administrator").add_argument(
        "username"
    )


def run(args: argparse.Namespace) -> int:
    from pharmgpt.services.config import describe_data
    from pharmgpt.services.errors import NotFound, PharmGPTError
    from pharmgpt.wiring import load_settings, open_services

    try:
        settings = load_settings()
    except PharmGPTError as e:
        print(f"configuration: {e.message}")
        return 1
    where = describe_data(settings)
    print(where)

    async def go() -> int:
        async with open_services(settings, existing_database=True) as services:
            if args.admin_command == "promote":
                user = await services.admin.promote(args.username)
                print(
                    f"{user.username} is now an administrator (sign out and in again, or reload "
                    "the app)"
                )
                return 0
            return 2

    try:
        return asyncio.run(go())
    except NotFound as e:
        print(f"{e.message} Looked in {where}.")
        return 1
    except PharmGPTError as e:
        print(e.message)
        return 1
