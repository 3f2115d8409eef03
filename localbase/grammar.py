"""Parse PostgREST's URL grammar into a small AST. No SQL here.

Covers what postgrest-py emits: select lists (aliases, casts, JSON arrows,
embedded resources with hints and `!inner`), filters with `not.` and
`(any)`/`(all)`, nested `or=(...)`/`and=(...)`, `order`, `limit`, `offset`,
and the same per embedded resource (`messages.order=...`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import ApiError, parse_error, pgrst

FILTER_OPS = {
    "eq",
    "neq",
    "gt",
    "gte",
    "lt",
    "lte",
    "like",
    "ilike",
    "match",
    "imatch",
    "in",
    "is",
    "isdistinct",
    "cs",
    "cd",
    "ov",
    "sl",
    "sr",
    "nxl",
    "nxr",
    "adj",
    "fts",
    "plfts",
    "phfts",
    "wfts",
}
QUANTIFIABLE = {"eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch"}
FTS_OPS = {"fts", "plfts", "phfts", "wfts"}
IS_VALUES = {"null", "not_null", "true", "false", "unknown"}
RESERVED = {"select", "columns", "on_conflict", "order", "limit", "offset", "or", "and"}
MAX_FILTER_DEPTH = 8  # nested and/or levels in one logic tree
MAX_FILTERS = 200  # conditions in one request, nested ones included

_IDENT = re.compile(r"[^\s,.:()!\"\->]+")


# ---------------------------------------------------------------------- AST
@dataclass
class Field:
    name: str
    json_path: list[tuple[str, str]] = field(default_factory=list)  # (arrow, key)

    @property
    def output_name(self) -> str:
        return self.json_path[-1][1] if self.json_path else self.name


@dataclass
class SelectColumn:
    field: Field
    alias: str | None = None
    cast: str | None = None


@dataclass
class SelectStar:
    pass


@dataclass
class SelectEmbed:
    relation: str
    alias: str | None
    hint: str | None
    join: str | None  # "inner" | "left" | None
    items: list


@dataclass
class Filter:
    field: Field
    op: str
    value: object  # str, list[str] for `in`, None for `is`
    negate: bool = False
    quantifier: str | None = None  # "any" | "all"
    language: str | None = None


@dataclass
class Logic:
    op: str  # "and" | "or"
    children: list
    negate: bool = False


@dataclass
class OrderTerm:
    field: Field
    desc: bool = False
    nulls: str | None = None  # "first" | "last"


@dataclass
class NodeParams:
    """Filters, order and paging for the top level or for one embedded path."""

    filters: list = field(default_factory=list)  # Filter | Logic
    order: list[OrderTerm] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None


@dataclass
class Query:
    select: list
    nodes: dict[tuple[str, ...], NodeParams]
    columns: list[str] | None = None
    on_conflict: list[str] | None = None
    rpc_args: dict[str, str] = field(default_factory=dict)

    def node(self, path: tuple[str, ...] = ()) -> NodeParams:
        return self.nodes.setdefault(path, NodeParams())


# ---------------------------------------------------------------------- scanning helpers
def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside parentheses, braces and double quotes."""
    parts, depth, buf, quoted, esc = [], 0, [], False, False
    for ch in text:
        if esc:
            buf.append(ch)
            esc = False
            continue
        if quoted:
            if ch == "\\":
                esc = True
            elif ch == '"':
                quoted = False
            buf.append(ch)
            continue
        if ch == '"':
            quoted = True
        elif ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
            if depth < 0:
                raise parse_error(f'failed to parse "{text}"', "unbalanced parentheses")
        if ch == sep and depth == 0:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    if quoted or depth != 0:
        raise parse_error(f'failed to parse "{text}"', "unbalanced quotes or parentheses")
    parts.append("".join(buf))
    return parts


def unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _name(text: str, what: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return unquote(text)
    if not text or not _IDENT.fullmatch(text):
        raise parse_error(f'failed to parse {what} "{text}"', "unexpected characters in a name")
    return text


def parse_field(text: str) -> Field:
    """`col`, `"odd col"`, `data->a->>b`, `arr->0`."""
    text = text.strip()
    pieces = re.split(r"(->>|->)", text)
    name = _name(pieces[0], "column")
    path: list[tuple[str, str]] = []
    for i in range(1, len(pieces), 2):
        key = pieces[i + 1] if i + 1 < len(pieces) else ""
        key = unquote(key.strip()) if key.strip().startswith('"') else key.strip()
        if key == "":
            raise parse_error(f'failed to parse JSON path in "{text}"')
        path.append((pieces[i], key))
    return Field(name, path)


# ---------------------------------------------------------------------- select
def parse_select(text: str) -> list:
    text = text.strip()
    if text == "":
        return [SelectStar()]
    items = []
    for raw in split_top(text):
        raw = raw.strip()
        if not raw:
            raise parse_error(f"failed to parse select parameter ({text})", "empty item")
        items.append(_parse_select_item(raw, text))
    return items


def _split_alias(raw: str) -> tuple[str | None, str]:
    # alias:thing, but not the '::' of a cast
    m = re.match(r'^("(?:[^"\\]|\\.)*"|[^:"()]+):(?!:)(.*)$', raw, re.S)
    if m:
        return _name(m.group(1), "alias"), m.group(2)
    return None, raw


def _parse_select_item(raw: str, whole: str):
    if raw == "*":
        return SelectStar()
    alias, rest = _split_alias(raw)
    if rest.endswith(")") and "(" in rest:
        head, inner = rest.split("(", 1)
        inner = inner[:-1]
        parts = head.split("!")
        relation = _name(parts[0], "relation")
        hint, join = None, None
        for p in parts[1:]:
            p = p.strip()
            if p in ("inner", "left"):
                join = p
            elif p:
                hint = _name(p, "hint")
        return SelectEmbed(relation, alias, hint, join, parse_select(inner))
    cast = None
    if "::" in rest:
        rest, cast = rest.rsplit("::", 1)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_ ]*(\[\])?", cast.strip()):
            raise parse_error(f"failed to parse select parameter ({whole})", f'bad cast "{cast}"')
        cast = cast.strip()
    if "(" in rest or ")" in rest:
        raise parse_error(f"failed to parse select parameter ({whole})", f'unexpected "{raw}"')
    return SelectColumn(parse_field(rest), alias, cast)


# ---------------------------------------------------------------------- filters
def parse_operation(field_: Field, text: str) -> Filter:
    """`[not.]op[(mod)].value` for the given field."""
    negate = False
    if text.startswith("not."):
        negate, text = True, text[4:]
    m = re.match(r"^([a-z]+)(?:\(([^)]*)\))?\.(.*)$", text, re.S)
    if not m:
        raise parse_error(f"failed to parse filter ({text})", "expected operator.value")
    op, arg, value = m.group(1), m.group(2), m.group(3)
    if op not in FILTER_OPS:
        raise parse_error(f"failed to parse filter ({op}.{value})", f'unknown operator "{op}"')
    quantifier = language = None
    if arg is not None:
        if op in FTS_OPS:
            language = arg
            if not re.fullmatch(r"[a-z_]+", language):
                raise parse_error(
                    f"failed to parse filter ({text})", f'bad text search language "{arg}"'
                )
        elif op in QUANTIFIABLE and arg in ("any", "all"):
            quantifier = arg
        else:
            raise parse_error(
                f"failed to parse filter ({text})", f'"{op}" takes no "({arg})" modifier'
            )
    parsed: object = value
    if op == "in":
        if not (value.startswith("(") and value.endswith(")")):
            raise parse_error(f"failed to parse filter (in.{value})", "in expects (a,b,c)")
        inner = value[1:-1]
        parsed = [] if inner == "" else [unquote(v.strip()) for v in split_top(inner)]
    elif op == "is":
        if value.lower() not in IS_VALUES:
            raise parse_error(
                f"failed to parse filter (is.{value})",
                "is accepts null, not_null, true, false, unknown",
            )
        parsed = value.lower()
    if quantifier and not (value.startswith("{") and value.endswith("}")):
        raise parse_error(f"failed to parse filter ({text})", "(any)/(all) expect {a,b,c}")
    return Filter(field_, op, parsed, negate, quantifier, language)


@dataclass
class Budget:
    """How many more conditions a request may have, and how deep they may nest.

    Checked before the recursive descent, so a 15k-deep `or=(...)` is refused
    after one linear scan instead of stalling the event loop or overflowing
    the stack.
    """

    filters: int = MAX_FILTERS
    depth: int = MAX_FILTER_DEPTH
    used: int = 0

    def spend(self) -> None:
        self.used += 1
        if self.used > self.filters:
            raise too_complex(f"more than {self.filters} conditions in one request")

    def check_depth(self, text: str) -> None:
        depth = deepest = 0
        quoted = esc = False
        for ch in text:
            if esc:
                esc = False
            elif quoted:
                if ch == "\\":
                    esc = True
                elif ch == '"':
                    quoted = False
            elif ch == '"':
                quoted = True
            elif ch == "(":
                depth += 1
                if depth > deepest:
                    deepest = depth
                    if deepest > self.depth + 1:  # +1: the tree's own parentheses
                        raise too_complex(f"and/or nested deeper than {self.depth} levels")
            elif ch == ")":
                depth -= 1


def too_complex(details: str) -> ApiError:
    return pgrst(
        "LB401",
        "The filters are too complex",
        details,
        "Use fewer conditions or less nesting, or split the request.",
    )


def parse_logic(op: str, negate: bool, text: str, budget: Budget | None = None) -> Logic:
    if budget is None:
        budget = Budget()
    budget.check_depth(text)
    return _parse_logic(op, negate, text, budget)


def _parse_logic(op: str, negate: bool, text: str, budget: Budget) -> Logic:
    text = text.strip()
    if not (text.startswith("(") and text.endswith(")")):
        raise parse_error(f"failed to parse logic tree ({text})", "expected (cond,cond,...)")
    children = []
    for item in split_top(text[1:-1]):
        item = item.strip()
        m = re.match(r"^(not\.)?(and|or)(\(.*\))$", item, re.S)
        if m:
            children.append(_parse_logic(m.group(2), bool(m.group(1)), m.group(3), budget))
            continue
        fm = re.match(r'^("(?:[^"\\]|\\.)*"|[^.]+?(?:(?:->>?)[^.]+?)*)\.(.*)$', item, re.S)
        if not fm:
            raise parse_error(f"failed to parse logic tree ({text})", f'unexpected "{item}"')
        budget.spend()
        f = parse_operation(parse_field(fm.group(1)), fm.group(2))
        if isinstance(f.value, str) and f.op not in ("is",):
            f.value = unquote(f.value)
        children.append(f)
    if not children:
        raise parse_error(f"failed to parse logic tree ({text})", "empty")
    return Logic(op, children, negate)


def _split_key(key: str) -> list[str]:
    return [p for p in split_top(key, ".")]


def _int_param(name: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise parse_error(f'"{name}" must be an integer, got "{value}"') from None
    if n < 0:
        raise parse_error(f'"{name}" must not be negative')
    return n


def parse_order(text: str) -> list[OrderTerm]:
    terms = []
    for raw in split_top(text):
        raw = raw.strip()
        if not raw:
            continue
        pieces = raw.split(".")
        modifiers = []
        while len(pieces) > 1 and pieces[-1] in ("asc", "desc", "nullsfirst", "nullslast"):
            modifiers.insert(0, pieces.pop())
        fld = parse_field(".".join(pieces))
        desc = "desc" in modifiers
        nulls = (
            "first" if "nullsfirst" in modifiers else "last" if "nullslast" in modifiers else None
        )
        terms.append(OrderTerm(fld, desc, nulls))
    return terms


def parse_query(
    pairs: list[tuple[str, str]],
    *,
    rpc_arg_names: set[str] | None = None,
    budget: Budget | None = None,
) -> Query:
    """Turn decoded query-string pairs into a Query.

    For GET RPC calls, `rpc_arg_names` says which keys are function arguments
    rather than filters. `budget` bounds the number and nesting of conditions.
    """
    if budget is None:
        budget = Budget()
    q = Query(select=[SelectStar()], nodes={})
    for key, value in pairs:
        if "\x00" in key or "\x00" in value:
            raise pgrst(
                "LB400",
                "The query string contains a NUL byte",
                f"in the parameter {key[:60]!r}",
                "Remove the NUL (%00) character; Postgres text cannot hold it.",
            )
        if rpc_arg_names is not None and key in rpc_arg_names:
            q.rpc_args[key] = value
            continue
        if key == "select":
            budget.check_depth(value)  # embeds nest with parentheses too
            q.select = parse_select(value)
            continue
        if key == "columns":
            q.columns = [_name(c, "column") for c in split_top(value)]
            continue
        if key == "on_conflict":
            q.on_conflict = [_name(c, "column") for c in split_top(value)]
            continue
        parts = _split_key(key)
        if len(parts) >= 2 and parts[-2] == "not" and parts[-1] in ("or", "and"):
            path = tuple(_name(p, "relation") for p in parts[:-2])
            q.node(path).filters.append(parse_logic(parts[-1], True, value, budget))
            continue
        last = parts[-1]
        path = tuple(_name(p, "relation") for p in parts[:-1])
        if last in ("or", "and"):
            q.node(path).filters.append(parse_logic(last, False, value, budget))
        elif last == "order":
            q.node(path).order.extend(parse_order(value))
        elif last == "limit":
            q.node(path).limit = _int_param(key, value)
        elif last == "offset":
            q.node(path).offset = _int_param(key, value)
        else:
            budget.spend()
            q.node(path).filters.append(parse_operation(parse_field(last), value))
    return q


__all__ = [
    "ApiError",
    "Budget",
    "Field",
    "Filter",
    "Logic",
    "NodeParams",
    "OrderTerm",
    "Query",
    "SelectColumn",
    "SelectEmbed",
    "SelectStar",
    "parse_field",
    "parse_logic",
    "parse_operation",
    "parse_order",
    "parse_query",
    "parse_select",
    "split_top",
    "unquote",
]
