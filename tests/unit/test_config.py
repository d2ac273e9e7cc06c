"""The forwarder config: a full example loads; each mistake is named with its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from redis_forwarder.config import ForwarderConfig, load_config
from redis_forwarder.errors import ConfigError
from redis_forwarder.model import DeploymentKind
from redis_forwarder.routes import RouteConfig, expand_channels
from redis_forwarder.sink.commands import SinkKind
from tests.support.cli import run_cli

EXAMPLE = """
[source]
kind = "sentinel"
addresses = ["127.0.0.1:26400", "127.0.0.1:26401"]
masters = ["alpha", "beta"]

[targets.archive]
kind = "standalone"
addresses = ["127.0.0.1:7000"]

[[route]]
name = "orders"
from = { patterns = ["orders.*"] }
to = { target = "archive", stream = "mirror:{channel}", maxlen = 1000000 }

[[route]]
name = "copies"
from = { channels = ["c:{0..3}"] }
to = { channel = "copy.{channel}" }

[node]
metrics = "127.0.0.1:9464"
"""


COPY_SINK = 'to = { channel = "copy.{channel}" }'


def load(tmp_path: Path, text: str) -> ForwarderConfig:
    path = tmp_path / "forwarder.toml"
    path.write_text(text)
    return load_config(path)


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_full_example(tmp_path: Path) -> None:
    config = load(tmp_path, EXAMPLE)
    assert config.source.kind is DeploymentKind.SENTINEL
    orders, copies = config.routes
    assert orders.from_.patterns == ["orders.*"] and orders.to.target == "archive"
    assert orders.to.kind is SinkKind.STREAM and orders.to.maxlen == 1_000_000
    assert copies.from_.channels == ["c:0", "c:1", "c:2", "c:3"]
    assert copies.to.kind is SinkKind.CHANNEL and copies.to.target == "source"
    assert config.node.metrics == "127.0.0.1:9464"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('{ patterns = ["orders.*"] }', "{ }"), "name what to read"),
        (
            ('{ patterns = ["orders.*"] }', '{ sharded = ["a"], patterns = ["b"] }'),
            "sharded channels go in a route of their own",
        ),
        (('{ patterns = ["orders.*"] }', '{ streams = ["s"] }'), "need group"),
        (
            ('stream = "mirror:{channel}", maxlen = 1000000', 'stream = "a", list = "b"'),
            "exactly one of stream, channel or list",
        ),
        (("mirror:{channel}", "mirror:{chanel}"), "names {chanel}"),
        (('target = "archive"', 'target = "nowhere"'), "no [targets.nowhere] table"),
        (('name = "copies"', 'name = "orders"'), "route names must be unique"),
        (('copy.{channel}" }', 'copy.{channel}", maxlen = 5 }'), "maxlen is for stream"),
        (("c:{0..3}", "c:{3..0}"), "runs backwards"),
        (("metrics =", "metricz ="), "node.metricz (line 22): unknown key"),
        (("127.0.0.1:9464", "127.0.0.1"), "is not host:port"),
        ((COPY_SINK, COPY_SINK + '\noversize = "dead-letter"'), "needs dead_letter"),
        ((COPY_SINK, COPY_SINK + '\noversize = "dead-letter"\ndead_letter = "d"'), "set it"),
        (
            (
                COPY_SINK,
                COPY_SINK
                + '\nmax_message_bytes = 9\noversize = "dead-letter"\ndead_letter = "d:{nope}"',
            ),
            "dead_letter: ",
        ),
    ],
)
def test_mistakes_are_named(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in EXAMPLE
    assert expected in problems(tmp_path, EXAMPLE.replace(old, new, 1))


def test_channel_expansion() -> None:
    assert expand_channels(["a{0..1}:{2..3}"]) == ["a0:2", "a0:3", "a1:2", "a1:3"]
    assert expand_channels(["{user}.x", "plain"]) == ["{user}.x", "plain"]
    assert len(expand_channels(["orders:{0..1023}"])) == 1024
    with pytest.raises(ValueError, match="more than"):
        expand_channels(["x{0..999999}"])


@pytest.mark.parametrize(
    "route",
    [
        'from = { channels = ["a"] }\nto = { channel = "{channel}" }',
        'from = { streams = ["s"], group = "g" }\nto = { stream = "s" }',
    ],
)
def test_a_route_may_not_feed_itself(tmp_path: Path, route: str) -> None:
    text = '[source]\nkind = "standalone"\naddresses = ["127.0.0.1:7000"]\n'
    text += f'[[route]]\nname = "loop"\n{route}\n'
    assert "forward its own output forever" in problems(tmp_path, text)


STREAMS = 'from = { streams = ["s"], group = "g" }'


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        (f'{STREAMS}\nto = {{ list = "q", field = "body" }}', None),
        (f'{STREAMS}\nto = {{ channel = "c", entry = "json" }}', None),
        (f'{STREAMS}\nto = {{ list = "q", entry = "yaml" }}', "'field' or 'json'"),
        (f'{STREAMS}\nto = {{ list = "q", entry = "json", field = "b" }}', 'not "json"'),
        (f'{STREAMS}\nto = {{ stream = "x", field = "b" }}', "copies every field"),
        ('from = { channels = ["a"] }\nto = { list = "q", entry = "json" }', "read streams"),
    ],
)
def test_what_a_stream_entry_becomes(tmp_path: Path, route: str, expected: str | None) -> None:
    text = '[source]\nkind = "standalone"\naddresses = ["127.0.0.1:7000"]\n'
    text += f'[[route]]\nname = "r"\n{route}\n'
    if expected is None:
        load(tmp_path, text)
    else:
        assert expected in problems(tmp_path, text)


def test_a_metrics_port_alone_binds_loopback(tmp_path: Path) -> None:
    config = load(tmp_path, EXAMPLE.replace('"127.0.0.1:9464"', '"9464"'))
    assert config.node.metrics == "127.0.0.1:9464"


def test_zookeeper_identity_needs_user_and_password_source(tmp_path: Path) -> None:
    base = EXAMPLE + '[coordination]\nzookeeper = "127.0.0.1:2181"\n'
    assert "give both or neither" in problems(tmp_path, base + 'username = "fleet"\n')
    config = load(tmp_path, base + 'username = "fleet"\npassword_env = "RF_TEST_ZK_PW"\n')
    assert config.coordination is not None
    with pytest.raises(Exception, match="RF_TEST_ZK_PW, which is not set"):
        config.coordination.credentials()


STANDALONE = '[source]\nkind = "standalone"\naddresses = ["127.0.0.1:7000"]\n'


@pytest.mark.parametrize(
    ("route", "read"),
    [
        # Issue 14: one PUBLISH became 1,390 messages in 1.5 s.
        ('from = { patterns = ["orders.*"] }\nto = { channel = "orders.mirror.{channel}" }',
         "pattern 'orders.*'"),
        ('from = { channels = ["a", "b"] }\nto = { channel = "b" }', "channel 'b'"),
        ('from = { channels = ["x.{0..2}", "x.x.1"] }\nto = { channel = "x.{channel}" }',
         "channel 'x.x.1'"),
        ('from = { patterns = ["l*"] }\nto = { channel = "{route}.{pattern}" }',
         "pattern 'l*'"),
        ('from = { sharded = ["s:{0..1}"] }\nto = { channel = "s:1", sharded = true }',
         "sharded channel 's:1'"),
        ('from = { streams = ["in:0", "in:1"], group = "g" }\nto = { stream = "in:1" }',
         "stream 'in:1'"),
    ],
)  # fmt: skip
def test_a_route_that_can_write_what_it_reads_is_refused(
    tmp_path: Path, route: str, read: str
) -> None:
    text = STANDALONE + f'[[route]]\nname = "loop"\n{route}\n'
    message = problems(tmp_path, text)
    assert "route[0].to." in message and "(line 7)" in message, message
    assert f"route 'loop' reads {read}" in message and "forward its own output forever" in message


@pytest.mark.parametrize(
    "route",
    [
        'from = { patterns = ["orders.*"] }\nto = { channel = "mirror.{channel}" }',
        'from = { channels = ["a", "x.b"] }\nto = { channel = "x.{channel}" }',  # x.a, x.x.b
        'from = { channels = ["a"] }\nto = { list = "a" }',  # nothing reads a list
        'from = { channels = ["a"] }\nto = { channel = "a", sharded = true }',  # SPUBLISH
        'from = { sharded = ["a"] }\nto = { channel = "a" }',  # PUBLISH
        'from = { patterns = ["l*"] }\nto = { channel = "l:{shard}:{channel}" }',  # run time
    ],
)
def test_a_route_that_cannot_be_shown_to_feed_itself_loads(tmp_path: Path, route: str) -> None:
    load(tmp_path, STANDALONE + f'[[route]]\nname = "r"\n{route}\n')


def test_a_target_sharing_an_address_with_the_source_is_the_source(tmp_path: Path) -> None:
    text = EXAMPLE.replace('addresses = ["127.0.0.1:7000"]', 'addresses = ["127.0.0.1:26401"]')
    text = text.replace('stream = "mirror:{channel}"', 'channel = "orders.{shard}"')
    text = text.replace("maxlen = 1000000", "sharded = false")
    message = problems(tmp_path, text)  # {shard} is a master name: orders.alpha is read
    assert "route[0].to.channel (line 14): route 'orders' reads pattern 'orders.*'" in message
    orders, copies = load(tmp_path, EXAMPLE).routes
    assert orders.writes_to_source is False and copies.writes_to_source is True
    # A reload compares routes: one loaded in a file equals the same route alone.
    assert copies == RouteConfig.model_validate(copies.model_dump(by_alias=True))


def test_the_cli_refuses_a_looping_route_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "loop.toml"
    config.write_text(
        STANDALONE + '[[route]]\nname = "orders"\nfrom = { patterns = ["orders.*"] }\n'
        'to = { channel = "orders.mirror.{channel}" }\n'
    )
    result = run_cli("run", "--config", str(config))
    assert result.code == 2, result.stderr
    assert "route[0].to.channel (line 7): route 'orders' reads pattern 'orders.*'" in result.stderr
    assert "'orders.mirror.{channel}'" in result.stderr


def test_stream_names_expand_like_channels(tmp_path: Path) -> None:
    route = '[[route]]\nname = "s"\nfrom = { streams = ["src:{0..1}", "{t}:x"], group = "g" }\n'
    config = load(tmp_path, STANDALONE + route + 'to = { stream = "copy:{channel}" }\n')
    assert config.routes[0].from_.streams == ["src:0", "src:1", "{t}:x"]  # a hash tag stays
    backwards = STANDALONE + route.replace("{0..1}", "{1..0}") + 'to = { stream = "c" }\n'
    assert "'src:{1..0}': range {1..0} runs backwards" in problems(tmp_path, backwards)
    huge = STANDALONE + route.replace("{0..1}", "{0..999999}") + 'to = { stream = "c" }\n'
    assert "expands to more than 100000 names" in problems(tmp_path, huge)


ORDERS_SINK = 'to = { target = "archive", stream = "mirror:{channel}", maxlen = 1000000 }'


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("maxlen = 1000000", 'maxlen = "10"',
         "route[0].to.maxlen (line 14): Input should be a valid integer, not a string '10'"),
        (ORDERS_SINK, ORDERS_SINK + "\nheartbeat = true",
         "route[0].heartbeat (line 15): Input should be a valid number, not a boolean True"),
        (ORDERS_SINK, ORDERS_SINK + "\nmax_in_flight = 2.0",
         "route[0].max_in_flight (line 15): Input should be a valid integer, not a float 2.0"),
        ("127.0.0.1:9464", "9464\"\ntopology_interval = \"1",
         "node.topology_interval (line 23): Input should be a valid number, not a string"),
    ],
)  # fmt: skip
def test_wrong_types_are_refused_not_coerced(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    # Issue 14: maxlen = "10", heartbeat = true, max_in_flight = 2.0 were accepted.
    assert old in EXAMPLE
    assert expected in problems(tmp_path, EXAMPLE.replace(old, new, 1))


def test_an_integer_where_a_float_is_meant_is_fine(tmp_path: Path) -> None:
    text = EXAMPLE.replace("maxlen = 1000000 }", "maxlen = 1000000 }\nheartbeat = 2")
    assert load(tmp_path, text).routes[0].heartbeat == 2.0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('target = "archive"', 'target = "nowhere"'), "route[0].to.target (line 14): "),
        (('name = "copies"', 'name = "orders"'), "route[1].name (line 17): route names must"),
        (("[targets.archive]", "[targets.source]"), "targets.source (line 7): [targets.source]"),
        (
            ("[node]", '[coordination]\nzookeeper = "127.0.0.1:2181"\nsession_timeout = 2\n'
             "[[route]]\nname = \"slow\"\nfrom = { channels = [\"s\"] }\n"
             "to = { list = \"l\" }\nheartbeat = 5\n[node]"),
            "coordination.session_timeout (line 23): [coordination] session_timeout = 2 is",
        ),
    ],
)  # fmt: skip
def test_errors_about_the_whole_file_name_their_key_and_line(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    old, new = change
    message = problems(tmp_path, EXAMPLE.replace(old, new, 1))
    assert expected in message and "(top level)" not in message, message


def test_a_bad_route_name_says_what_is_allowed(tmp_path: Path) -> None:
    message = problems(tmp_path, EXAMPLE.replace('name = "orders"', 'name = "my orders!"'))
    assert "route[0].name (line 12): 'my orders!': a route name is 1 to 64 letters" in message
    assert "A-Za-z" not in message and "pattern" not in message


WAIT_ROUTE = '[[route]]\nname = "r"\n{from_}\nto = {{ stream = "x:{{channel}}", wait = {wait} }}\n'


@pytest.mark.parametrize(
    ("wait", "from_", "kind", "expected"),
    [
        ("{ replicas = 1, timeout = 0.1 }", STREAMS, "sentinel", None),
        ("{ replicas = 2, timeout = 1 }", STREAMS, "standalone", None),
        ("{ replicas = 0, timeout = 0.1 }", STREAMS, "sentinel", "greater than or equal to 1"),
        ("{ replicas = 1, timeout = 0 }", STREAMS, "sentinel", "greater than 0"),
        ("{ replicas = 1 }", STREAMS, "sentinel", "timeout"),
        ("{ replicas = 1, timeout = 5 }", STREAMS, "sentinel", "below sink_timeout"),
        # A cluster target too since issue 14: WAIT on each master the batch touched.
        ("{ replicas = 1, timeout = 0.1 }", STREAMS, "cluster", None),
        # Pub/sub too since issue 14: a batch no replica confirmed is counted at risk.
        ("{ replicas = 1, timeout = 0.1 }", 'from = { channels = ["a"] }', "sentinel", None),
        ("{ replicas = 1, timeout = 0.1 }", 'from = { channels = ["a"] }', "cluster", None),
    ],
)
def test_wait_for_replicas(
    tmp_path: Path, wait: str, from_: str, kind: str, expected: str | None
) -> None:
    masters = 'masters = ["alpha"]\n' if kind == "sentinel" else ""
    text = f'[source]\nkind = "{kind}"\naddresses = ["127.0.0.1:7000"]\n{masters}'
    text += WAIT_ROUTE.format(from_=from_, wait=wait)
    if expected is None:
        route = load(tmp_path, text).routes[0]
        assert route.to.wait is not None and route.to.wait.command().startswith(b"*3\r\n$4\r\nWAIT")
    else:
        assert expected in problems(tmp_path, text)
