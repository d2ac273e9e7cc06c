"""What a PromQL expression selects (pure, no Prometheus): the metric names it reads,
the label names each selector matches on, the labels its ``by``/``without``/``on``/
``ignoring``/``group_left``/``group_right`` lists name, and the labels it makes itself
(``label_replace``/``label_join`` destinations, ``count_values``' label).

Not a full parser: enough of the grammar to tell a selector from a function, an
aggregation, a keyword, a duration, a number or a string, so that a dashboard's or an
alert's queries can be checked against what the nodes export (a typo in a metric or
label name is then a failed test, not an empty panel). Grafana's variables (``$route``,
``${instance}``, ``${route:regex}``, ``[[route]]``, ``[$__rate_interval]``) are skipped
wherever they stand; its templating queries go through :func:`template_query`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<var>\$\{[^}]*\}|\$\w+|\[\[\w+(?::\w+)?\]\])
    |(?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\w*)
    |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    |(?P<op>!=|=~|!~|==|>=|<=|[-+*/%^<>=(){}\[\],@:])
    """,
    re.VERBOSE,
)
AGGREGATIONS = frozenset(
    {
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    }
)  # fmt: skip
LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"bool", "and", "or", "unless", "atan2", "offset", *LABEL_LISTS})
NUMBERS = frozenset({"inf", "nan"})
# function -> the argument (0-based) that names a label the function makes
MAKES_LABEL = {"label_replace": 1, "label_join": 1, "count_values": 0}
MATCH_OPS = frozenset({"=", "!=", "=~", "!~"})


@dataclass(frozen=True)
class Token:
    kind: str  # string, var, number, ident, op
    text: str
    at: int


@dataclass(frozen=True)
class Selector:
    """One vector selector: its metric (None when the name is not written, or only as
    a regular expression) and the label names its matchers use (``__name__`` aside)."""

    metric: str | None
    labels: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Query:
    selectors: tuple[Selector, ...]
    grouping: frozenset[str] = frozenset()  # by, without, on, ignoring, group_left/right
    made: frozenset[str] = frozenset()  # labels the expression makes (label_replace...)

    @property
    def metrics(self) -> frozenset[str]:
        return frozenset(s.metric for s in self.selectors if s.metric is not None)


def tokens(expr: str) -> list[Token]:
    """The tokens of ``expr``, without spaces and comments; ValueError on a character
    PromQL has no use for."""
    found, at = [], 0
    while at < len(expr):
        match = _TOKEN.match(expr, at)
        if match is None:
            raise ValueError(f"unexpected {expr[at]!r} at {at} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            found.append(Token(kind, match.group(), at))
        at = match.end()
    return found


def unquote(literal: str) -> str:
    """A string literal's text (escapes resolved as Go's strconv.Unquote would, for
    the common ones)."""
    body = literal[1:-1]
    if literal[0] == "`":
        return body
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), body)


class _Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.tokens = tokens(expr)
        self.at = 0
        self.selectors: list[Selector] = []
        self.grouping: set[str] = set()
        self.made: set[str] = set()
        # one per open parenthesis: the function it calls (None: plain parentheses)
        # and the index of the argument being read
        self.calls: list[list[str | int | None]] = []

    def fail(self, why: str) -> ValueError:
        where = self.tokens[self.at].at if self.at < len(self.tokens) else len(self.expr)
        return ValueError(f"{why} at {where} in {self.expr!r}")

    def peek(self, offset: int = 0) -> Token | None:
        index = self.at + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self, text: str | None = None) -> Token:
        token = self.peek()
        if token is None or (text is not None and token.text != text):
            raise self.fail(f"expected {text or 'more'}")
        self.at += 1
        return token

    def is_next(self, text: str, offset: int = 1) -> bool:
        token = self.peek(offset)
        return token is not None and token.kind == "op" and token.text == text

    def parse(self) -> Query:
        while self.peek() is not None:
            self.step()
        if self.calls:
            raise self.fail("unclosed '('")
        return Query(tuple(self.selectors), frozenset(self.grouping), frozenset(self.made))

    def step(self) -> None:
        token = self.take()
        if token.kind == "ident":
            self.identifier(token)
        elif token.kind == "string":
            self.string(token)
        elif token.text == "{":
            self.selectors.append(self.matchers(None))
        elif token.text == "(":
            self.calls.append([None, 0])
        elif token.text == ")":
            if not self.calls:
                raise self.fail("unbalanced ')'")
            self.calls.pop()
        elif token.text == ",":
            if not self.calls:
                raise self.fail("',' outside a call")
            index = self.calls[-1][1]
            assert isinstance(index, int)
            self.calls[-1][1] = index + 1
        elif token.text == "[":
            self.skip_range()
        elif token.text in ("}", "]"):
            raise self.fail(f"unbalanced {token.text!r}")
        # numbers, variables and operators select nothing

    def identifier(self, token: Token) -> None:
        word = token.text.lower()  # PromQL's keywords and aggregations ignore case
        if word in LABEL_LISTS:
            if self.is_next("(", 0):
                self.grouping.update(self.label_list())
            elif word not in ("group_left", "group_right"):
                raise self.fail(f"{token.text} without its label list")
        elif word == "offset":
            if self.is_next("-", 0):
                self.take()
            self.take()  # the duration (or a variable)
        elif word in KEYWORDS or word in NUMBERS:
            pass
        elif (
            word in AGGREGATIONS
            and self.peek() is not None
            and self.peek_word()
            in (
                "by",
                "without",
            )
        ):
            self.take()
            self.grouping.update(self.label_list())
            self.take("(")
            self.calls.append([word, 0])
        elif self.is_next("(", 0):
            self.take()
            self.calls.append([word if word in AGGREGATIONS else token.text, 0])
        else:
            if self.is_next("{", 0):
                self.take()
                self.selectors.append(self.matchers(token.text))
            else:
                self.selectors.append(Selector(token.text))

    def peek_word(self) -> str | None:
        token = self.peek()
        return token.text.lower() if token is not None and token.kind == "ident" else None

    def string(self, token: Token) -> None:
        """A string argument: the label a function makes, when it is that argument."""
        if self.calls:
            function, index = self.calls[-1]
            if isinstance(function, str) and MAKES_LABEL.get(function) == index:
                self.made.add(unquote(token.text))

    def label_list(self) -> set[str]:
        """``(a, b, ...)``: the names (identifiers, or quoted names)."""
        self.take("(")
        names = set()
        while not self.is_next(")", 0):
            token = self.take()
            if token.kind == "ident":
                names.add(token.text)
            elif token.kind == "string":
                names.add(unquote(token.text))
            else:
                raise self.fail(f"{token.text!r} in a label list")
            if not self.is_next(")", 0):
                self.take(",")
        self.take(")")
        return names

    def matchers(self, metric: str | None) -> Selector:
        """After ``{``: the matchers up to ``}``, as a selector of ``metric``."""
        labels = set()
        while not self.is_next("}", 0):
            name = self.take()
            if name.kind not in ("ident", "string"):
                raise self.fail(f"{name.text!r} where a label name was expected")
            label = name.text if name.kind == "ident" else unquote(name.text)
            op = self.peek()
            if op is not None and op.kind == "op" and op.text in MATCH_OPS:
                self.take()
                value = self.take()
                if value.kind != "string":
                    raise self.fail(f"{value.text!r} where a quoted value was expected")
                if label == "__name__":
                    if metric is None and op.text == "=":
                        metric = unquote(value.text)
                else:
                    labels.add(label)
            elif name.kind == "string" and metric is None:
                metric = label  # {"metric.name", ...} (PromQL 3's quoted names)
            else:
                raise self.fail(f"a matcher of {label!r} without an operator")
            if not self.is_next("}", 0):
                self.take(",")
        self.take("}")
        return Selector(metric, frozenset(labels))

    def skip_range(self) -> None:
        """A range or subquery (``[5m]``, ``[$__rate_interval]``, ``[1h:1m]``)."""
        while True:
            token = self.take()
            if token.text == "]":
                return
            if token.text in ("[", "(", "{", "}", ")"):
                raise self.fail(f"{token.text!r} in a range")


def parse(expr: str) -> Query:
    """What ``expr`` selects; ValueError (naming where) on what does not parse."""
    return _Parser(expr).parse()


_LABEL_VALUES = re.compile(r"^\s*label_values\s*\((?P<args>.*)\)\s*$", re.DOTALL)
_QUERY_RESULT = re.compile(r"^\s*query_result\s*\((?P<expr>.*)\)\s*$", re.DOTALL)
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def template_query(query: str) -> Query:
    """A Grafana templating query of the Prometheus data source: ``label_values(label)``
    (the label on any metric: a grouping label, selector-less), ``label_values(expr,
    label)`` (the label on expr's metric: counted as its selectors' label), or
    ``query_result(expr)``. ValueError on other forms (``metrics(...)`` names no metric)."""
    result = _QUERY_RESULT.match(query)
    if result is not None:
        return parse(result["expr"])
    values = _LABEL_VALUES.match(query)
    if values is None:
        raise ValueError(f"not label_values(...) or query_result(...): {query!r}")
    args = values["args"].strip()
    expr, comma, label = args.rpartition(",")
    label = label.strip()
    if not _LABEL_NAME.match(label):
        raise ValueError(f"label_values' label {label!r} is not a label name: {query!r}")
    if not comma:
        return Query((), frozenset({label}))
    inner = parse(expr)
    if not inner.selectors:
        raise ValueError(f"label_values' first argument selects no metric: {query!r}")
    selectors = tuple(Selector(s.metric, s.labels | {label}) for s in inner.selectors)
    return Query(selectors, inner.grouping, inner.made)
