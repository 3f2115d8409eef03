"""What a new password may not be: too short, one of the passwords every guessing
list starts with, one repeated character, or the username itself.

The list is short on purpose: it stops the first guesses an attacker makes
(and the lockout allows only a handful), not every weak password.
"""

from __future__ import annotations

import unicodedata

# Written for this project: the usual first guesses, plus the pharmacy ones.
_COMMON = """
password password1 password12 password123 password1234 passw0rd p@ssword p@ssw0rd passwort
motdepasse
12345678 123456789 1234567890 0123456789 87654321 11111111 00000000 12341234 12121212 11223344
123123123 147258369 159753456 qwertyui qwertyuiop qwerty123 qwerty12 asdfghjk asdfghjkl zxcvbnm1
1q2w3e4r 1q2w3e4r5t 1qaz2wsx qazwsxedc abcd1234 abc12345 abcdefgh aaaaaaaa iloveyou iloveyou1
letmein1 letmein123 welcome1 welcome123 welcome! changeme changeme1 changeme123 default1
sunshine princess football baseball superman batman123 starwars trustno1 whatever dragon123
monkey123 master123 shadow123 michael1 jennifer charlie1 freedom1 computer internet secret123
administrator admin123 admin1234 adminadmin rootroot root1234 test1234 testtest test12345 guest123
user1234 login123 access14 hello123 helloworld summer2024 winter2024 spring2024 autumn2024
summer2025 winter2025 january1 december pharmacy pharmacy1 pharmacy123 pharmacist pharmacist1
pharmgpt pharmgpt1 pharmgpt123 medicine medicine1 doctor123 nurse123 hospital hospital1 prescription
""".split()
COMMON_PASSWORDS = frozenset(_COMMON)


def fold(text: str) -> str:
    """NFKC, then Unicode case folding, then NFKC again (folding can denormalise)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text or "").casefold())


def password_problem(password: str, *, min_length: int, username: str | None = None) -> str | None:
    """Why this password is refused, in words for the person choosing it; None if it is fine."""
    password = password or ""
    if len(password) < min_length:
        return f"Passwords are at least {min_length} characters long."
    if len(password) > 1024:
        return "Passwords are at most 1,024 characters long."
    if not password.strip():
        return "A password cannot be only spaces."
    if len(set(password)) == 1 and len(password) < 20:
        return "That password is a single repeated character; choose one that is harder to guess."
    folded = fold(password)
    if folded in COMMON_PASSWORDS or folded.strip() in COMMON_PASSWORDS:
        return "That password is one of the first an attacker would try; choose another."
    if username and folded == fold(username):
        return "The password cannot be the same as the username."
    return None
