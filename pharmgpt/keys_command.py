"""`pharmgpt keys generate`: a signing key for a hosted project that has no legacy JWT secret.

PharmGPT keeps its own accounts (DESIGN D2) and signs its users' tokens
itself, so the project must trust a key PharmGPT holds: a new ES256 key pair
is written here (0600) and its private JWK is imported in the dashboard.
"""

from __future__ import annotations

import json
from pathlib import Path

KEY_FILE_NAME = "jwt-signing-key.json"


def default_key_file() -> Path:
    """In the data directory, beside the rest of this install's private files."""
    from .wiring import default_data_dir

    return default_data_dir()[0] / KEY_FILE_NAME


STEPS = """\
Next steps (docs/supabase.md has the whole set-up):
  1. Supabase dashboard -> Project Settings -> JWT Keys -> "JWT Signing Keys".
  2. "Create standby key" -> "Import an existing private key", paste the contents of
       {path}
     (the private JWK: Supabase must hold the private half to sign with it).
  3. "Rotate keys", so the imported key is the current one. Every key the project
     trusts is published at <SUPABASE_URL>/auth/v1/.well-known/jwks.json; look for kid {kid}.
  4. Give PharmGPT the same key (environment or .streamlit/secrets.toml):
       SUPABASE_JWT_SIGNING_KEY={path}
  5. `pharmgpt doctor` must report "signing ... accepted". Keep the file secret and backed
     up; never commit it.
"""


def add_commands(sub) -> None:
    keys = sub.add_parser("keys", help="JWT signing keys for a hosted Supabase project")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    gen = ksub.add_parser("generate", help="write a new ES256 key pair and print the JWK to import")
    gen.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"where the private key goes (default: {KEY_FILE_NAME} in the data directory)",
    )
    gen.add_argument("--kid", default=None, help="the key id (default: a new UUID)")
    gen.add_argument("--force", action="store_true", help="replace an existing key file")


def run(args) -> int:
    from pharmgpt.localbase.files import private_dir
    from pharmgpt.localbase.keys import generate_es256, write_private

    from .wiring import default_data_dir

    if args.out is None:
        private_dir(default_data_dir()[0])  # as the app makes it, if this is its first use
    out: Path = (args.out or default_key_file()).expanduser().resolve()
    if out.exists() and not args.force:
        print(
            f"{out} exists: a key the project may already trust. "
            "Choose another --out, or --force to replace it."
        )
        return 1
    key = generate_es256(args.kid)
    write_private(out, json.dumps(key.private_jwk(), indent=2) + "\n")
    print(f"Wrote a new ES256 signing key (private, mode 0600): {out}")
    print(f"kid: {key.kid}\n")
    print("Public JWK (what the project publishes once the key is imported):")
    print(json.dumps(key.public_jwk(), indent=2) + "\n")
    print(STEPS.format(path=out, kid=key.kid))
    return 0
