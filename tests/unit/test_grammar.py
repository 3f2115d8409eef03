"""The PostgREST URL grammar, parsed without a database."""

from __future__ import annotations

import pytest
from pharmgpt.localbase.errors import ApiError
from pharmgpt.localbase.grammar import (
    Filter,
    Logic,
    SelectColumn,
    SelectEmbed,
    SelectStar,
    parse_field,
    parse_logic,
    parse_operation,
    parse_order,
    parse_query,
    parse_select,
    split_top,
)


def test_select_items():
    items = parse_select(
        "id,label:name,qty::text,data->a->>b,msgs:messages!inner(id,role),users!fk_user(*)"
    )
    assert isinstance(items[0], SelectColumn) and items[0].field.name == "id"
    assert items[1].alias == "label" and items[1].field.name == "name"
    assert items[2].cast == "text"
    assert (
        items[3].field.json_path == [("->", "a"), ("->>", "b")]
        and items[3].field.output_name == "b"
    )
    emb = items[4]
    assert isinstance(emb, SelectEmbed) and emb.alias == "msgs" and emb.relation == "messages"
    assert emb.join == "inner" and [i.field.name for i in emb.items] == ["id", "role"]
    assert items[5].hint == "fk_user" and isinstance(items[5].items[0], SelectStar)


@pytest.mark.parametrize(
    "bad", ["id,(select 1)", "id::text;drop", "a b", "id,,name", "x(", "id;--"]
)
def test_select_rejects_garbage(bad):
    with pytest.raises(ApiError) as e:
        parse_select(bad)
    assert e.value.status == 400


def test_operations():
    f = parse_operation(parse_field("qty"), "not.gt.5")
    assert (f.op, f.value, f.negate) == ("gt", "5", True)
    f = parse_operation(parse_field("name"), 'in.("a,b",c,"d\\"e")')
    assert f.value == ["a,b", "c", 'd"e']
    f = parse_operation(parse_field("doc"), "fts(english).cat & dog")
    assert f.language == "english" and f.value == "cat & dog"
    f = parse_operation(parse_field("name"), "like(any).{a*,b*}")
    assert f.quantifier == "any"
    f = parse_operation(parse_field("x"), "eq.1.5.2")  # the value keeps its dots
    assert f.value == "1.5.2"
    assert parse_operation(parse_field("x"), "is.NULL").value == "null"


@pytest.mark.parametrize(
    "bad", ["bogus.1", "eq", "is.maybe", "in.1,2", "fts(eng'lish).x", "gt(any).5", "cs(any).{1}"]
)
def test_operations_reject_garbage(bad):
    with pytest.raises(ApiError):
        parse_operation(parse_field("x"), bad)


def test_logic_trees():
    t = parse_logic("or", False, '(a.eq.1,not.and(b.gt.2,c.is.null),d.eq."x,y",e->>k.eq.v)')
    assert isinstance(t, Logic) and t.op == "or" and len(t.children) == 4
    assert isinstance(t.children[1], Logic) and t.children[1].negate and t.children[1].op == "and"
    assert t.children[2].value == "x,y"
    assert t.children[3].field.json_path == [("->>", "k")]
    with pytest.raises(ApiError):
        parse_logic("or", False, "(a.eq.1")


def test_order_and_query_keys():
    terms = parse_order("a.desc.nullslast,b,data->>x.asc")
    assert [(t.field.name, t.desc, t.nulls) for t in terms] == [
        ("a", True, "last"),
        ("b", False, None),
        ("data", False, None),
    ]
    q = parse_query(
        [
            ("select", "id,messages(id)"),
            ("messages.order", "created_at.desc"),
            ("messages.limit", "5"),
            ("not.or", "(a.eq.1,b.eq.2)"),
            ("limit", "10"),
            ("offset", "20"),
            ("messages.role", "eq.user"),
            ("on_conflict", "a,b"),
        ]
    )
    assert q.node(("messages",)).limit == 5 and q.node(("messages",)).order[0].desc
    assert isinstance(q.node(()).filters[0], Logic) and q.node(()).filters[0].negate
    assert isinstance(q.node(("messages",)).filters[0], Filter)
    assert (q.node(()).limit, q.node(()).offset, q.on_conflict) == (10, 20, ["a", "b"])
    with pytest.raises(ApiError):
        parse_query([("limit", "-1")])


def test_rpc_arguments_are_split_from_filters():
    q = parse_query([("a", "1"), ("id", "eq.3")], rpc_arg_names={"a"})
    assert q.rpc_args == {"a": "1"} and q.node(()).filters[0].field.name == "id"


def test_split_top_respects_quotes_and_parens():
    assert split_top('a,"b,c",d(e,f),{g,h}') == ["a", '"b,c"', "d(e,f)", "{g,h}"]
