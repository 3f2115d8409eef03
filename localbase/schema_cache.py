"""What the gateway knows of the database, read from the catalog.

Every identifier in a request is checked against this cache before it can
reach SQL, and the names emitted come from here, not from the request.
Reloaded on `NOTIFY pgrst, 'reload schema'` like PostgREST.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg


@dataclass
class Column:
    name: str
    type: str  # format_type() output, safe to splice as a type
    nullable: bool
    has_default: bool


@dataclass
class Table:
    schema: str
    name: str
    columns: dict[str, Column]
    pk: list[str]
    insertable: bool = True


@dataclass
class Relationship:
    """A foreign key from (schema, table).cols to (f_schema, f_table).f_cols."""

    name: str
    schema: str
    table: str
    cols: list[str]
    f_schema: str
    f_table: str
    f_cols: list[str]


@dataclass
class FuncArg:
    name: str
    type: str
    has_default: bool


@dataclass
class Function:
    schema: str
    name: str
    args: list[FuncArg]
    return_type: str
    returns_set: bool
    return_table: tuple[str, str] | None  # composite return: its (schema, table)
    returns_void: bool
    volatility: str  # i s v
    out_columns: list[tuple[str, str]] = field(
        default_factory=list
    )  # RETURNS TABLE / OUT parameters


@dataclass
class SchemaCache:
    schemas: list[str]
    tables: dict[tuple[str, str], Table] = field(default_factory=dict)
    relationships: list[Relationship] = field(default_factory=list)
    functions: dict[tuple[str, str], list[Function]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)  # lower name/alias -> canonical
    roles: set[str] = field(default_factory=set)  # roles the gateway may switch to
    # per role, the settings `ALTER ROLE ... SET` gave it (statement_timeout, ...), which a
    # SET ROLE inside a transaction does not apply by itself; the gateway SET LOCALs them
    role_settings: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def table(self, schema: str, name: str) -> Table | None:
        return self.tables.get((schema, name))

    def rels_between(
        self, a: tuple[str, str], b: tuple[str, str]
    ) -> list[tuple[Relationship, bool]]:
        """FKs linking a and b; the flag is True when a holds the FK (a -> b is to-one)."""
        out = []
        for r in self.relationships:
            if (r.schema, r.table) == a and (r.f_schema, r.f_table) == b:
                out.append((r, True))
            elif (r.schema, r.table) == b and (r.f_schema, r.f_table) == a:
                out.append((r, False))
        return out


_TYPE_ALIASES = {
    "int": "integer",
    "int4": "integer",
    "int8": "bigint",
    "int2": "smallint",
    "float": "double precision",
    "float8": "double precision",
    "float4": "real",
    "bool": "boolean",
    "varchar": "character varying",
    "char": "character",
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
    "timetz": "time with time zone",
    "decimal": "numeric",
}


def load(conn: psycopg.Connection, schemas: list[str]) -> SchemaCache:
    cache = SchemaCache(schemas=list(schemas))
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname, c.relkind, a.attname,
               format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
               (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''),
               coalesce((SELECT array_agg(k.attname ORDER BY array_position(i.indkey, k.attnum))
                           FROM pg_index i JOIN pg_attribute k
                             ON k.attrelid = i.indrelid AND k.attnum = ANY (i.indkey)
                          WHERE i.indrelid = c.oid AND i.indisprimary), '{}')
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'v', 'm', 'f', 'p')
         ORDER BY n.nspname, c.relname, a.attnum
        """,
        (schemas,),
    ).fetchall()
    for nsp, rel, kind, col, typ, nullable, has_default, pk in rows:
        t = cache.tables.get((nsp, rel))
        if t is None:
            t = cache.tables[(nsp, rel)] = Table(
                nsp, rel, {}, list(pk), kind in ("r", "p", "v", "f")
            )
        t.columns[col] = Column(col, typ, nullable, has_default)

    for name, nsp, rel, cols, fnsp, frel, fcols in conn.execute(
        """
        SELECT con.conname, n.nspname, c.relname,
               (SELECT array_agg(a.attname ORDER BY k.ord)
                  FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
                  JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num),
               fn.nspname, fc.relname,
               (SELECT array_agg(a.attname ORDER BY k.ord)
                  FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
                  JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num)
          FROM pg_constraint con
          JOIN pg_class c ON c.oid = con.conrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_class fc ON fc.oid = con.confrelid
          JOIN pg_namespace fn ON fn.oid = fc.relnamespace
         WHERE con.contype = 'f' AND n.nspname = ANY(%s) AND fn.nspname = ANY(%s)
        """,
        (schemas, schemas),
    ).fetchall():
        cache.relationships.append(
            Relationship(name, nsp, rel, list(cols), fnsp, frel, list(fcols))
        )

    for (
        nsp,
        fname,
        argnames,
        argtypes,
        modes,
        nargdefaults,
        rettype,
        retset,
        rtnsp,
        rtname,
        isvoid,
        vol,
    ) in conn.execute(
        """
        SELECT n.nspname, p.proname,
               coalesce(p.proargnames, '{}'),
               (SELECT array_agg(format_type(t, NULL) ORDER BY o)
                  FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]))
                       WITH ORDINALITY u(t, o)),
               coalesce(p.proargmodes::text[], '{}'),
               p.pronargdefaults, format_type(p.prorettype, NULL), p.proretset,
               rn.nspname, rc.relname, p.prorettype = 'void'::regtype, p.provolatile
          FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
          LEFT JOIN pg_type rt ON rt.oid = p.prorettype
          LEFT JOIN pg_class rc ON rc.oid = rt.typrelid AND rt.typtype = 'c'
          LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
         WHERE n.nspname = ANY(%s) AND p.prokind = 'f'
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
        """,
        (schemas,),
    ).fetchall():
        argtypes = list(argtypes or [])
        modes = list(modes) or ["i"] * len(argtypes)
        names = list(argnames) + [""] * max(0, len(argtypes) - len(argnames))
        ins = [i for i, m in enumerate(modes) if m in ("i", "b", "v")]
        outs = [(names[i], argtypes[i]) for i, m in enumerate(modes) if m in ("o", "b", "t")]
        args = [
            FuncArg(names[i], argtypes[i], k >= len(ins) - nargdefaults) for k, i in enumerate(ins)
        ]
        fn = Function(
            nsp,
            fname,
            args,
            rettype,
            retset,
            (rtnsp, rtname) if rtname else None,
            isvoid,
            vol,
            out_columns=outs if rettype == "record" and outs else [],
        )
        cache.functions.setdefault((nsp, fname), []).append(fn)

    for (typname,) in conn.execute(
        """SELECT format_type(t.oid, NULL)
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname IN ('pg_catalog', 'public') AND t.typtype IN ('b', 'e', 'd', 'r', 'm')
              AND t.typname !~ '^_'"""
    ).fetchall():
        cache.types[typname.lower()] = typname
    for alias, canonical in _TYPE_ALIASES.items():
        if canonical in cache.types:
            cache.types.setdefault(alias, canonical)

    cache.roles = {
        r
        for (r,) in conn.execute(
            """SELECT r.rolname FROM pg_roles r
                WHERE pg_has_role(current_user, r.oid, 'MEMBER') AND r.rolname <> current_user"""
        ).fetchall()
    } | {conn.execute("SELECT current_user").fetchone()[0]}
    cache.role_settings = load_role_settings(conn, cache.roles)
    return cache


def load_role_settings(
    conn: psycopg.Connection, roles: set[str]
) -> dict[str, list[tuple[str, str]]]:
    """Each switchable role's settings, as PostgREST reads them for impersonation.

    A database-specific setting overrides the role-wide one. Only settings an
    ordinary role may change (context `user`) are kept, so applying them
    cannot fail for lack of privilege.
    """
    settable = {
        n for (n,) in conn.execute("SELECT name FROM pg_settings WHERE context = 'user'").fetchall()
    }
    out: dict[str, dict[str, str]] = {}
    for role, config in conn.execute(
        """SELECT r.rolname, s.setconfig
             FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
            WHERE s.setdatabase IN
                  (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
            ORDER BY s.setdatabase"""
    ).fetchall():
        if role not in roles:
            continue
        for item in config or []:
            name, _, value = item.partition("=")
            if name in settable and name not in ("role", "session_authorization"):
                out.setdefault(role, {})[name] = value
    return {role: sorted(kv.items()) for role, kv in out.items()}
