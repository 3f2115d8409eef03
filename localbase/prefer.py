"""The `Prefer` header, read as PostgREST reads it.

Lenient by default: a preference that is unknown, has an invalid value, or is
one localbase does not implement is ignored (and not reported in
`Preference-Applied`). With `handling=strict` any of those is a 400
`PGRST122` naming them, so a client that depends on a preference learns it
was not honoured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import pgrst

_VALUES: dict[str, tuple[str, ...]] = {
    "return": ("minimal", "headers-only", "representation"),
    "count": ("exact", "planned", "estimated"),
    "resolution": ("merge-duplicates", "ignore-duplicates"),
    "missing": ("default", "null"),
    "handling": ("lenient", "strict"),
}
# valid PostgREST preferences that localbase does not implement
_UNSUPPORTED = ("tx", "max-affected", "timezone", "params")


@dataclass
class Preferences:
    ret: str | None = None
    count: str | None = None
    resolution: str | None = None
    missing: str | None = None
    strict: bool = False
    invalid: list[str] = field(default_factory=list)


def parse_prefer(header: str) -> Preferences:
    out = Preferences()
    for part in header.split(","):
        part = part.strip()
        if not part:
            continue
        key, _, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        allowed = _VALUES.get(key)
        if allowed is None or value not in allowed:
            if not (key == "tx" and value == "commit"):  # the default, so honoured
                out.invalid.append(part)
            continue
        if key == "handling":
            out.strict = value == "strict"
        else:
            setattr(out, "ret" if key == "return" else key, value)
    if out.strict and out.invalid:
        unsupported = [
            p for p in out.invalid if p.partition("=")[0].strip().lower() in _UNSUPPORTED
        ]
        raise pgrst(
            "PGRST122",
            "Invalid preferences given with handling=strict",
            "Invalid preferences: " + ", ".join(out.invalid),
            "localbase does not implement: " + ", ".join(unsupported) if unsupported else None,
        )
    return out
