"""The PromQL name extractor (tests/support/promql.py) that checks the dashboard and the
alerts against the nodes' metrics: selectors are told from functions, aggregations,
keywords, durations, numbers and strings; Grafana's variables are skipped."""

from __future__ import annotations

import pytest

from tests.support.promql import Query, Selector, parse, template_query


def sel(metric: str | None, *labels: str) -> Selector:
    return Selector(metric, frozenset(labels))


def test_a_selector_with_grafana_variables_in_its_matchers_and_range() -> None:
    query = parse(
        'rate(forwarder_received_messages_total{job=~"$job", instance=~"${instance}", '
        'route=~"${route:regex}"}[$__rate_interval])'
    )
    assert query == Query((sel("forwarder_received_messages_total", "job", "instance", "route"),))


def test_histogram_quantile_over_a_sum_by_le_and_route() -> None:
    query = parse(
        "histogram_quantile(0.99, sum by (le, route) "
        '(rate(forwarder_latency_seconds_bucket{route=~"$route"}[$__rate_interval])))'
    )
    assert query.selectors == (sel("forwarder_latency_seconds_bucket", "route"),)
    assert query.grouping == {"le", "route"}
    assert query.metrics == {"forwarder_latency_seconds_bucket"}


def test_nested_aggregations_with_grouping_before_and_after_the_arguments() -> None:
    query = parse(
        "topk(5, sum without (shard) (max by (route, shard, instance) "
        "(rate(a_total[5m])))) / ignoring (x) sum(rate(b_total[1h30m])) by (route)"
    )
    assert query.selectors == (sel("a_total"), sel("b_total"))
    assert query.grouping == {"shard", "route", "instance", "x"}


def test_keywords_and_aggregations_ignore_case() -> None:
    query = parse("SUM BY (route) (Up) AND ON () Max WITHOUT (le) (x)")
    assert query.selectors == (sel("Up"), sel("x"))
    assert query.grouping == {"route", "le"}


def test_binary_operators_with_on_group_left_and_group_right() -> None:
    query = parse(
        'forwarder_task_epoch{route=~"$route"} * on (instance, route, shard) group_left (node) '
        "(forwarder_task_running == bool 1) + ignoring (shard) group_right a "
        "and on () b unless c or d"
    )
    assert query.metrics == {"forwarder_task_epoch", "forwarder_task_running", *"abcd"}
    assert query.selectors[0] == sel("forwarder_task_epoch", "route")
    assert query.grouping == {"instance", "route", "shard", "node"}


def test_functions_numbers_durations_and_modifiers_select_nothing() -> None:
    query = parse(
        "time() - vector(0x1f) * 1e-3 + Inf - NaN > scalar(x offset -5m) "
        "+ y offset $__interval + z @ start() + w[1h:1m] + absent(v[5m] @ 1609746000)"
    )
    assert query.selectors == tuple(sel(name) for name in ("x", "y", "z", "w", "v"))


def test_a_subquery_over_a_range_function() -> None:
    query = parse('max_over_time(rate(x_total{a="1"}[5m])[$__range:$__interval])')
    assert query.selectors == (sel("x_total", "a"),)


def test_string_literals_holding_braces_commas_and_quotes() -> None:
    query = parse(
        'label_replace(up{job="a{b},c", instance!~"[\\"}]"}, "host", "$1", "instance", '
        "`(.*):{(}`) + on () label_replace(x{a='}'}, 'b{', '', '', '')"
    )
    assert query.selectors == (sel("up", "job", "instance"), sel("x", "a"))
    assert query.made == {"host", "b{"}


def test_labels_made_by_label_join_and_count_values() -> None:
    query = parse(
        'count_values by (route) ("epoch", forwarder_task_epoch) '
        '+ label_join(x, "both", "-", "route", "shard") + count_values("v", y) by (v)'
    )
    assert query.metrics == {"forwarder_task_epoch", "x", "y"}
    assert query.made == {"epoch", "both", "v"}
    assert query.grouping == {"route", "v"}


def test_a_name_matcher_names_the_metric_only_when_exact() -> None:
    assert parse('{__name__="up", job="j"}').selectors == (sel("up", "job"),)
    assert parse('{__name__=~"forwarder_.*"}').selectors == (sel(None),)
    assert parse('{"my.metric", route="r"}').selectors == (sel("my.metric", "route"),)


def test_comments_and_legacy_variables() -> None:
    query = parse('sum(rate(x{a="$a"}[[[interval]]]))  # sum(not_this)\n + y')
    assert query.selectors == (sel("x", "a"), sel("y"))


@pytest.mark.parametrize(
    "expr",
    [
        "sum(rate(x[5m])",
        "rate(x[5m]))",
        'x{route="a"',
        "x{route=~$route}",
        "x{route}",
        "sum by route (x)",
        "x[5m",
        "x ; y",
        "x}",
    ],
)
def test_what_does_not_parse_is_an_error_naming_where(expr: str) -> None:
    with pytest.raises(ValueError, match=r" at \d+ in "):
        parse(expr)


def test_label_values_with_a_metric_counts_the_label_as_the_selectors() -> None:
    query = template_query(
        'label_values(forwarder_task_running{job=~"$job", instance=~"$instance"}, route)'
    )
    assert query.selectors == (sel("forwarder_task_running", "job", "instance", "route"),)
    assert template_query("label_values(up, instance)").selectors == (sel("up", "instance"),)


def test_label_values_of_a_label_alone_and_query_result() -> None:
    assert template_query("label_values(job)") == Query((), frozenset({"job"}))
    query = template_query("query_result(sum by (route) (forwarder_owned_tasks))")
    assert query == Query((sel("forwarder_owned_tasks"),), frozenset({"route"}))


@pytest.mark.parametrize(
    "query",
    ["metrics(forwarder_.*)", "label_values(up, 'instance')", "label_values(1, x)", "up"],
)
def test_other_templating_queries_are_refused(query: str) -> None:
    with pytest.raises(ValueError):
        template_query(query)
