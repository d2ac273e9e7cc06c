"""Target name templates: rendering on bytes, and errors that name the problem."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redis_forwarder.templates import TemplateError, compile_template


def test_render_fields() -> None:
    render = compile_template("mirror:{route}:{shard}:{channel}").bind(route="r", shard="alpha")
    assert render(b"orders.1", b"") == b"mirror:r:alpha:orders.1"
    assert compile_template("{pattern}|{channel}").bind()(b"a.b", b"a.*") == b"a.*|a.b"


def test_constant_and_identity_shortcuts() -> None:
    assert compile_template("all-{route}").bind(route="x")(b"anything", b"") == b"all-x"
    channel = b"\xff\x00binary"
    assert compile_template("{channel}").bind()(channel, b"") is channel


def test_origin_is_bound_per_task_and_merged_into_the_literals() -> None:
    """A MirrorMaker-style prefix: the identity of the deployment read is fixed per
    task, so it costs a message no more than a literal prefix would."""
    template = compile_template("{origin}.{channel}")
    render = template.bind(origin="west", route="r", shard="s")
    assert render(b"orders", b"") == b"west.orders"
    assert render(b"\xff", b"") == b"west.\xff"
    assert compile_template("{origin}-copy").bind(origin="east")(b"any", b"") == b"east-copy"
    with pytest.raises(TemplateError, match=r"no value for \['origin'\]"):
        template.bind(route="r", shard="s")


@given(st.binary(max_size=50))
def test_binary_channels_pass_byte_for_byte(channel: bytes) -> None:
    assert compile_template("p:{channel}:s").bind()(channel, b"") == b"p:" + channel + b":s"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "{chanel}",
            "names {chanel}; the fields are {channel}, {origin}, {pattern}, {route}, {shard}",
        ),
        ("a{channel", "unbalanced brace"),
        ("a}b", "unbalanced brace"),
        ("", "may not be empty"),
    ],
)
def test_bad_templates(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("{", r"\{").replace("}", r"\}")):
        compile_template(text)


def test_unbound_task_field() -> None:
    with pytest.raises(TemplateError, match="no value for"):
        compile_template("{shard}:{channel}").bind()
