"""Turn a parsed request into one parameterised SQL statement.

Identifiers are looked up in the schema cache and emitted from it, quoted;
every value from the request is a `$n` bind parameter. Each statement returns
one row: (JSON array text, number of rows[, total count]).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import orjson

from .errors import ApiError, parse_error, pgrst, unknown_column
from .grammar import (
    Field,
    Filter,
    Logic,
    NodeParams,
    OrderTerm,
    Query,
    SelectColumn,
    SelectEmbed,
    SelectStar,
)
from .schema_cache import Column, Function, SchemaCache, Table

_SIMPLE_OPS = {
    "eq": "=",
    "neq": "<>",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "like": "LIKE",
    "ilike": "ILIKE",
    "match": "~",
    "imatch": "~*",
    "cs": "@>",
    "cd": "<@",
    "ov": "&&",
    "sl": "<<",
    "sr": ">>",
    "nxr": "&<",
    "nxl": "&>",
    "adj": "-|-",
}
_FTS_FUNCS = {
    "fts": "to_tsquery",
    "plfts": "plainto_tsquery",
    "phfts": "phraseto_tsquery",
    "wfts": "websearch_to_tsquery",
}
_IS_SQL = {
    "null": "IS NULL",
    "not_null": "IS NOT NULL",
    "true": "IS TRUE",
    "false": "IS FALSE",
    "unknown": "IS UNKNOWN",
}


MUTATION_TAIL = " SELECT b, n, t FROM _q"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{ident(schema)}.{ident(name)}"


def array_literal(items: list[str]) -> str:
    """A Postgres array literal with every element quoted (bound, never spliced)."""
    out = []
    for it in items:
        if it.lower() == "null":
            out.append("NULL")
        else:
            out.append('"' + it.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(out) + "}"


@dataclass
class Statement:
    sql: str
    params: list = field(default_factory=list)
    count_sql: str | None = None  # for count=planned (EXPLAIN)
    returns_object: bool = False  # the result is one JSON object, not an array
    returns_scalar: bool = False
    returns_void: bool = False


class Params:
    def __init__(self) -> None:
        self.values: list = []

    def add(self, value) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


@dataclass
class _Scope:
    """A table instance in the query: its alias and the embeds selected under it."""

    table: Table
    alias: str
    path: tuple[str, ...]
    embeds: dict[str, tuple[SelectEmbed, _Scope, str]] = field(
        default_factory=dict
    )  # name -> (embed, child, join)


class Builder:
    def __init__(self, cache: SchemaCache, schema: str, *, max_rows: int | None = None):
        self.cache = cache
        self.schema = schema
        self.max_rows = (
            max_rows  # caps every to-many embed too (the top level is capped by the caller)
        )
        self.p = Params()
        self._n = 0

    # ------------------------------------------------------------------ names
    def _alias(self) -> str:
        a = f"t{self._n}"
        self._n += 1
        return a

    def table(self, name: str) -> Table:
        t = self.cache.table(self.schema, name)
        if t is None:
            raise pgrst(
                "PGRST205",
                f"Could not find the table '{self.schema}.{name}' in the schema cache",
                None,
                None,
            )
        return t

    def column(self, table: Table, name: str) -> str:
        if name not in table.columns:
            raise unknown_column(table.name, name)
        return ident(name)

    def cast_type(self, name: str) -> str:
        arr = name.endswith("[]")
        base = name[:-2] if arr else name
        canonical = self.cache.types.get(base.strip().lower())
        if canonical is None:
            raise ApiError(400, "42704", f'type "{name}" does not exist', None, None)
        return canonical + ("[]" if arr else "")

    def field_sql(self, scope: _Scope, f: Field) -> str:
        expr = f"{scope.alias}.{self.column(scope.table, f.name)}"
        for arrow, key in f.json_path:
            if re.fullmatch(r"-?\d+", key):
                expr = f"{expr}{arrow}{self.p.add(key)}::int"
            else:
                expr = f"{expr}{arrow}{self.p.add(key)}::text"
        return expr

    # ------------------------------------------------------------------ select
    def _resolve_embed(self, parent: Table, emb: SelectEmbed) -> tuple[Table, str, bool]:
        """The target table, the join condition template and whether it is to-one."""
        target = self.cache.table(self.schema, emb.relation)
        if target is None:
            raise pgrst(
                "PGRST200",
                f"Could not find a relationship between '{parent.name}' and '{emb.relation}' "
                "in the schema cache",
                None,
                "Verify the relationship name and that a foreign key links the tables.",
            )
        rels = self.cache.rels_between((parent.schema, parent.name), (target.schema, target.name))
        if emb.hint:
            rels = [
                (r, own)
                for r, own in rels
                if r.name == emb.hint or emb.hint in (r.cols if own else r.cols)
            ]
        if not rels:
            raise pgrst(
                "PGRST200",
                f"Could not find a relationship between '{parent.name}' and '{emb.relation}' "
                "in the schema cache",
                None,
                None,
            )
        if len(rels) > 1:
            raise pgrst(
                "PGRST201",
                f"Could not embed because more than one relationship was found for "
                f"'{parent.name}' and '{emb.relation}'",
                [r.name for r, _ in rels],
                f"Try changing '{emb.relation}' to one of "
                + ", ".join(f"'{emb.relation}!{r.name}'" for r, _ in rels),
            )
        rel, parent_holds_fk = rels[0]
        if parent_holds_fk:  # parent.cols -> target.f_cols : to-one
            pairs = list(zip(rel.f_cols, rel.cols, strict=True))
        else:  # target.cols -> parent.f_cols : to-many
            pairs = list(zip(rel.cols, rel.f_cols, strict=True))
        cond = " AND ".join(f"{{child}}.{ident(c)} = {{parent}}.{ident(p)}" for c, p in pairs)
        return target, cond, parent_holds_fk

    def select_list(self, scope: _Scope, items: list, q: Query) -> list[str]:
        out: list[str] = []
        for it in items:
            if isinstance(it, SelectStar):
                out.extend(f"{scope.alias}.{ident(c)}" for c in scope.table.columns)
            elif isinstance(it, SelectColumn):
                expr = self.field_sql(scope, it.field)
                if it.cast:
                    expr = f"({expr})::{self.cast_type(it.cast)}"
                out.append(f"{expr} AS {ident(it.alias or it.field.output_name)}")
            elif isinstance(it, SelectEmbed):
                out.append(self._embed_sql(scope, it, q))
        return out

    def _embed_sql(self, scope: _Scope, emb: SelectEmbed, q: Query) -> str:
        target, cond_tpl, to_one = self._resolve_embed(scope.table, emb)
        name = emb.alias or emb.relation
        child = _Scope(target, self._alias(), scope.path + (name,))
        cond = cond_tpl.format(child=child.alias, parent=scope.alias)
        node = (
            q.nodes.get(child.path)
            or (q.nodes.get(scope.path + (emb.relation,)) if emb.alias else None)
            or NodeParams()
        )
        cols = self.select_list(child, emb.items, q)
        where = [cond] + [self.condition(child, f, q) for f in node.filters]
        inner = (
            f"SELECT {', '.join(cols) or 'NULL'} "
            f"FROM {qualified(target.schema, target.name)} AS {child.alias}"
            f" WHERE {' AND '.join(where)}"
        )
        embed_limit = None
        if not to_one and self.max_rows is not None:
            embed_limit = self.max_rows if node.limit is None else min(node.limit, self.max_rows)
        inner += self.order_limit(child, node, limit=embed_limit)
        scope.embeds[name] = (emb, child, " AND ".join(where))
        sub = self._alias()
        if to_one:
            return f"(SELECT row_to_json({sub}) FROM ({inner}) {sub}) AS {ident(name)}"
        return (
            f"COALESCE((SELECT json_agg({sub}) FROM ({inner}) {sub}), '[]'::json) AS {ident(name)}"
        )

    def inner_join_conditions(self, scope: _Scope) -> list[str]:
        out = []
        for emb, child, where in scope.embeds.values():
            if emb.join == "inner":
                out.append(
                    f"EXISTS (SELECT 1 FROM {qualified(child.table.schema, child.table.name)} "
                    f"AS {child.alias} WHERE {where})"
                )
        return out

    # ------------------------------------------------------------------ filters
    def condition(self, scope: _Scope, f: Filter | Logic, q: Query) -> str:
        if isinstance(f, Logic):
            joiner = " AND " if f.op == "and" else " OR "
            expr = "(" + joiner.join(self.condition(scope, c, q) for c in f.children) + ")"
            return f"NOT {expr}" if f.negate else expr
        # `embedded=is.null` / `not.is.null`: filter parents on whether the embed matched
        if (
            f.field.name not in scope.table.columns
            and not f.field.json_path
            and f.field.name in scope.embeds
        ):
            if f.op != "is" or f.value not in ("null", "not_null"):
                raise parse_error(
                    f"only is.null and not.is.null apply to the embedded resource '{f.field.name}'"
                )
            _, child, where = scope.embeds[f.field.name]
            source = qualified(child.table.schema, child.table.name)
            exists = f"EXISTS (SELECT 1 FROM {source} AS {child.alias} WHERE {where})"
            want_null = (f.value == "null") != f.negate
            return f"NOT {exists}" if want_null else exists
        lhs = self.field_sql(scope, f.field)
        col = scope.table.columns[f.field.name]
        op = f.op
        if op == "is":
            expr = f"{lhs} {_IS_SQL[f.value]}"
        elif op == "in":
            expr = f"{lhs} = ANY({self.p.add(array_literal(f.value))})" if f.value else "false"
        elif op == "isdistinct":
            expr = f"{lhs} IS DISTINCT FROM {self.p.add(f.value)}"
        elif op in _FTS_FUNCS:
            fn = _FTS_FUNCS[op]
            vec = (
                lhs
                if col.type == "tsvector" and not f.field.json_path
                else (
                    f"to_tsvector({self.p.add(f.language)}::regconfig, {lhs})"
                    if f.language
                    else f"to_tsvector({lhs})"
                )
            )
            query = (
                f"{fn}({self.p.add(f.language)}::regconfig, {self.p.add(f.value)})"
                if f.language
                else f"{fn}({self.p.add(f.value)})"
            )
            expr = f"{vec} @@ {query}"
        else:
            sql_op = _SIMPLE_OPS[op]
            value = f.value
            if op in ("like", "ilike"):
                value = value.replace("*", "%")
            if f.quantifier:
                expr = f"{lhs} {sql_op} {f.quantifier.upper()}({self.p.add(value)})"
            else:
                expr = f"{lhs} {sql_op} {self.p.add(value)}"
        return f"NOT ({expr})" if f.negate else expr

    def order_limit(
        self,
        scope: _Scope,
        node: NodeParams,
        *,
        limit: int | None = None,
        offset: int | None = None,
    ) -> str:
        sql = ""
        if node.order:
            sql += " ORDER BY " + ", ".join(self._order_term(scope, t) for t in node.order)
        lim = node.limit if limit is None else limit
        off = node.offset if offset is None else offset
        if lim is not None:
            sql += f" LIMIT {self.p.add(lim)}::bigint"
        if off:
            sql += f" OFFSET {self.p.add(off)}::bigint"
        return sql

    def _order_term(self, scope: _Scope, t: OrderTerm) -> str:
        s = self.field_sql(scope, t.field) + (" DESC" if t.desc else " ASC")
        if t.nulls:
            s += " NULLS FIRST" if t.nulls == "first" else " NULLS LAST"
        return s

    def _check_paths(self, q: Query, scope: _Scope) -> None:
        known = {()}

        def walk(s: _Scope):
            for emb, child, _ in s.embeds.values():
                known.add(child.path)
                if emb.alias:
                    known.add(s.path + (emb.relation,))
                walk(child)

        walk(scope)
        for path in q.nodes:
            if path not in known:
                raise pgrst(
                    "PGRST108",
                    f"'{'.'.join(path)}' is not an embedded resource in this request",
                    None,
                    f"Verify that '{'.'.join(path)}' is included in the 'select' query parameter.",
                )

    # ------------------------------------------------------------------ statements
    def read(
        self, table_name: str, q: Query, *, count: str | None, limit: int | None, offset: int | None
    ) -> Statement:
        t = self.table(table_name)
        scope = _Scope(t, self._alias(), ())
        return self._select(
            scope,
            q,
            f"{qualified(t.schema, t.name)} AS {scope.alias}",
            count=count,
            limit=limit,
            offset=offset,
        )

    def _select(
        self,
        scope: _Scope,
        q: Query,
        source: str,
        *,
        count: str | None,
        limit: int | None,
        offset: int | None,
    ) -> Statement:
        """SELECT over `source` (a table or a function call aliased as the scope)."""
        cols = self.select_list(scope, q.select, q)
        self._check_paths(q, scope)
        node = q.nodes.get((), NodeParams())
        where = [self.condition(scope, f, q) for f in node.filters] + self.inner_join_conditions(
            scope
        )
        from_where = f"FROM {source}"
        if where:
            from_where += " WHERE " + " AND ".join(where)
        inner = f"SELECT {', '.join(cols) or 'NULL'} {from_where}" + self.order_limit(
            scope, node, limit=limit, offset=offset
        )
        total = f", (SELECT count(*) {from_where})" if count == "exact" else ", NULL::bigint"
        sql = f"SELECT coalesce(json_agg(_r), '[]')::text, count(*){total} FROM ({inner}) _r"
        st = Statement(sql, self.p.values)
        if count in ("planned", "estimated"):
            st.count_sql = f"EXPLAIN (FORMAT JSON) SELECT 1 {from_where}"
        return st

    def _returning(self, scope: _Scope, q: Query, representation: bool) -> tuple[str, list[str]]:
        """RETURNING list for a mutation, and the select list evaluated over it."""
        if not representation:
            return "1", []
        cols = self.select_list(scope, q.select, q)
        self._check_paths(q, scope)
        return "*", cols

    def _wrap_mutation(
        self, scope: _Scope, mutation: str, cols: list[str], representation: bool
    ) -> str:
        # a data-modifying WITH must stay at the top level, so the result is one more CTE
        # (`_q`) that the gateway's size cap can select from (MUTATION_TAIL)
        if not representation:
            return (
                f"WITH _m AS ({mutation}), "
                "_q(b, n, t) AS (SELECT '[]'::text, count(*), NULL::bigint FROM _m)" + MUTATION_TAIL
            )
        return (
            f"WITH _m AS ({mutation}), "
            "_q(b, n, t) AS (SELECT coalesce(json_agg(_r), '[]')::text, count(*), "
            f"NULL::bigint FROM (SELECT {', '.join(cols) or 'NULL'} FROM _m AS {scope.alias}) _r)"
            + MUTATION_TAIL
        )

    def _returning_columns(self, t: Table, q: Query, representation: bool) -> str:
        if not representation:
            return "1"
        needed: list[str] = []

        def collect(items):
            for it in items:
                if isinstance(it, SelectStar):
                    needed.extend(t.columns)
                elif isinstance(it, SelectColumn):
                    needed.append(it.field.name)
                elif isinstance(it, SelectEmbed):
                    pass

        collect(q.select)
        embeds = [it for it in q.select if isinstance(it, SelectEmbed)]
        for emb in embeds:
            _target, cond, _ = self._resolve_embed(t, emb)
            needed.extend(re.findall(r'\{parent\}\."((?:[^"]|"")+)"', cond))
        seen = []
        for c in needed:
            self.column(t, c.replace('""', '"'))
            if c not in seen:
                seen.append(c)
        return ", ".join(ident(c.replace('""', '"')) for c in seen) or "1"

    def insert(
        self,
        table_name: str,
        q: Query,
        body,
        *,
        representation: bool,
        resolution: str | None,
        missing_default: bool,
    ) -> Statement:
        t = self.table(table_name)
        rows = body if isinstance(body, list) else [body]
        if not all(isinstance(r, dict) for r in rows):
            raise pgrst("PGRST102", "All object keys must match", None, None)
        if q.columns is not None:
            columns = q.columns
        else:
            columns = []
            for r in rows:
                for k in r:
                    if k not in columns:
                        columns.append(k)
        for c in columns:
            if c not in t.columns:
                raise pgrst(
                    "PGRST204",
                    f"Could not find the '{c}' column of '{t.name}' in the schema cache",
                    None,
                    None,
                )
        scope = _Scope(t, self._alias(), ())
        target = qualified(t.schema, t.name)
        col_sql = ", ".join(ident(c) for c in columns)
        if not rows or (not columns and len(rows) <= 1):
            values_sql = "DEFAULT VALUES" if rows else f"SELECT * FROM {target} WHERE false"
            col_part = ""
        elif missing_default:
            tuples = []
            for r in rows:
                ph = self.p.add(orjson.dumps(r).decode())
                cells = [
                    f"(json_populate_record(NULL::{target}, {ph}::json)).{ident(c)}"
                    if c in r
                    else "DEFAULT"
                    for c in columns
                ]
                tuples.append("(" + ", ".join(cells) + ")")
            values_sql = "VALUES " + ", ".join(tuples)
            col_part = f" ({col_sql})"
        else:
            ph = self.p.add(orjson.dumps(rows).decode())
            values_sql = (
                f"SELECT {col_sql} FROM json_populate_recordset(NULL::{target}, {ph}::json)"
            )
            col_part = f" ({col_sql})"
        if not columns:
            col_part = ""
        conflict = ""
        if resolution:
            keys = q.on_conflict or t.pk
            if not keys:
                raise pgrst(
                    "PGRST100", f"'{t.name}' has no primary key; pass on_conflict", None, None
                )
            key_sql = ", ".join(self.column(t, k) for k in keys)
            if resolution == "ignore-duplicates":
                conflict = f" ON CONFLICT ({key_sql}) DO NOTHING"
            else:
                updates = [c for c in columns if c not in keys] or keys[:1]
                conflict = f" ON CONFLICT ({key_sql}) DO UPDATE SET " + ", ".join(
                    f"{ident(c)} = EXCLUDED.{ident(c)}" for c in updates
                )
        returning = self._returning_columns(t, q, representation)
        mutation = (
            f"INSERT INTO {target} AS {scope.alias}{col_part} {values_sql}{conflict}"
            f" RETURNING {returning}"
        )
        _, cols = self._returning(scope, q, representation)
        return Statement(self._wrap_mutation(scope, mutation, cols, representation), self.p.values)

    def update(self, table_name: str, q: Query, body, *, representation: bool) -> Statement:
        t = self.table(table_name)
        if not isinstance(body, dict):
            raise pgrst("PGRST102", "PATCH expects a JSON object", None, None)
        scope = _Scope(t, self._alias(), ())
        for c in body:
            if c not in t.columns:
                raise pgrst(
                    "PGRST204",
                    f"Could not find the '{c}' column of '{t.name}' in the schema cache",
                    None,
                    None,
                )
        target = qualified(t.schema, t.name)
        returning = self._returning_columns(t, q, representation)
        _, cols = self._returning(scope, q, representation)
        node = q.nodes.get((), NodeParams())
        self._no_paging(node, "PATCH")
        where = [self.condition(scope, f, q) for f in node.filters]
        where_sql = (" WHERE " + " AND ".join(where)) if where else ""
        if not body:
            mutation = f"SELECT {returning} FROM {target} AS {scope.alias} WHERE false"
        else:
            ph = self.p.add(orjson.dumps(body).decode())
            sets = ", ".join(f"{ident(c)} = _b.{ident(c)}" for c in body)
            mutation = (
                f"UPDATE {target} AS {scope.alias} SET {sets} "
                f"FROM json_populate_record(NULL::{target}, {ph}::json) AS _b"
                f"{where_sql} RETURNING {self._qualify(scope, returning)}"
            )
        return Statement(self._wrap_mutation(scope, mutation, cols, representation), self.p.values)

    @staticmethod
    def _no_paging(node: NodeParams, verb: str) -> None:
        if node.limit is not None or node.offset is not None or node.order:
            raise pgrst(
                "PGRST100", f"limit, offset and order are not supported on {verb} by localbase"
            )

    def _qualify(self, scope: _Scope, returning: str) -> str:
        if returning == "1":
            return "1"
        return ", ".join(f"{scope.alias}.{c.strip()}" for c in returning.split(", "))

    def delete(self, table_name: str, q: Query, *, representation: bool) -> Statement:
        t = self.table(table_name)
        scope = _Scope(t, self._alias(), ())
        returning = self._returning_columns(t, q, representation)
        _, cols = self._returning(scope, q, representation)
        node = q.nodes.get((), NodeParams())
        self._no_paging(node, "DELETE")
        where = [self.condition(scope, f, q) for f in node.filters]
        where_sql = (" WHERE " + " AND ".join(where)) if where else ""
        mutation = (
            f"DELETE FROM {qualified(t.schema, t.name)} AS {scope.alias}{where_sql}"
            f" RETURNING {returning}"
        )
        return Statement(self._wrap_mutation(scope, mutation, cols, representation), self.p.values)

    # ------------------------------------------------------------------ rpc
    def resolve_function(self, name: str, given: set[str]) -> Function:
        candidates = self.cache.functions.get((self.schema, name), [])
        for fn in candidates:
            names = {a.name for a in fn.args}
            required = {a.name for a in fn.args if not a.has_default}
            if given <= names and required <= given and all(a.name for a in fn.args):
                return fn
        sig = ", ".join(sorted(given))
        raise pgrst(
            "PGRST202",
            f"Could not find the function {self.schema}.{name}({sig}) in the schema cache",
            None,
            "Check the function name and its argument names.",
        )

    def rpc(
        self,
        fn: Function,
        args: dict,
        q: Query,
        *,
        count: str | None,
        limit: int | None,
        offset: int | None,
    ) -> Statement:
        arg_types = {a.name: a.type for a in fn.args}
        call_args = []
        from_args = ""
        if args:
            ph = self.p.add(orjson.dumps(args).decode())
            record_def = ", ".join(f"{ident(k)} {arg_types[k]}" for k in args)
            from_args = f"json_to_record({ph}::json) AS _a({record_def})"
            call_args = [f"{ident(k)} => _a.{ident(k)}" for k in args]
        call = f"{qualified(fn.schema, fn.name)}({', '.join(call_args)})"
        if fn.returns_void:
            src = f" FROM {from_args}" if from_args else ""
            return Statement(
                f"SELECT 'null'::text, 1, NULL::bigint FROM (SELECT {call}{src}) _v",
                self.p.values,
                returns_void=True,
            )
        if fn.return_table is None and not fn.returns_set and not fn.out_columns:
            src = f" FROM {from_args}" if from_args else ""
            return Statement(
                f"SELECT to_json({call})::text, 1, NULL::bigint{src}",
                self.p.values,
                returns_scalar=True,
            )
        if fn.return_table is not None:
            t = self.cache.table(*fn.return_table)
            if t is None:
                raise pgrst("PGRSTX00", f"return type of {fn.name} is not in an exposed schema")
        elif fn.out_columns:  # RETURNS TABLE (...) or OUT parameters
            t = Table(
                fn.schema,
                fn.name,
                {n: Column(n, typ, True, False) for n, typ in fn.out_columns},
                [],
            )
        else:  # SETOF scalar: one column named after the function
            t = Table(
                fn.schema, fn.name, {fn.name: Column(fn.name, fn.return_type, True, False)}, []
            )
        scope = _Scope(t, self._alias(), ())
        if fn.return_table is not None or fn.out_columns:
            source = f"{call} AS {scope.alias}"
        else:
            source = f"{call} AS {scope.alias}({ident(fn.name)})"
        if from_args:
            source = f"{from_args} CROSS JOIN LATERAL {source}"
        st = self._select(scope, q, source, count=count, limit=limit, offset=offset)
        st.returns_object = not fn.returns_set
        return st
