import argparse
import sys

from .cli import add_commands, run
from .files import private_umask


def main() -> int:
    private_umask()  # the gateway's entry point (LocalStack starts it this way)
    parser = argparse.ArgumentParser(prog="python -m pharmgpt.localbase")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    return run(
        parser.parse_args(["local", *sys.argv[1:]] if sys.argv[1:2] != ["db"] else sys.argv[1:])
    )


if __name__ == "__main__":
    raise SystemExit(main())
