"""A small, safe expression language for the baseline rule — never ``eval``.

Grammar (case-insensitive keywords)::

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := "(" expr ")" | NAME OP literal | NAME ["not"] "in" "[" literal ("," literal)* "]"
                | NAME "is" ["not"] "null"
    OP         := "<" | "<=" | ">" | ">=" | "==" | "!="
    literal    := number | 'string' | "string" | true | false

Names are column names (letters, digits, ``_`` and ``.``; quote others with backticks).
:func:`parse` checks the names against known columns and the literal types against the
column roles, and reports the character position of every problem. A compiled
:class:`Expression` evaluates on a frame (vectorized) and on one record; a missing value
makes a comparison false.

A boolean column compares by truth, in the vocabulary of :mod:`shipyard.data.values`:
``partner == 'yes'``, ``partner == true`` and ``partner == 1`` mean the same, whether the
data spells its booleans yes/no, Yes/No, true/false or 0/1; a literal that is not a
boolean (``partner == 'maybe'``) is refused when the rule is parsed.

>>> e = parse("tenure < 6 and contract == 'Month-to-month'",
...           {"tenure": "numeric", "contract": "categorical"})
>>> e.evaluate_one({"tenure": 3, "contract": "Month-to-month"})
True
>>> b = parse("partner == 'yes'", {"partner": "boolean"})
>>> [b.evaluate_one({"partner": v}) for v in ("Yes", True, 1, "n", None)]
[True, True, True, False, False]
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shipyard.data.contract import category_key
from shipyard.data.values import BOOLEAN_SPELLINGS, bool_code, number_or_nan, to_bool
from shipyard.errors import RuleError

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<number>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
    |(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    |(?P<op><=|>=|==|!=|<|>)
    |(?P<punct>[()\[\],])
    |(?P<quoted>`[^`]+`)
    |(?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
MAX_DEPTH = 32  # nesting of parentheses and 'not' a rule may have
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false"}
_ORDER_OPS = {"<", "<=", ">", ">="}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            where = len(text) - len(text[pos:].lstrip())
            raise RuleError(_at(text, where, f"unexpected character {text[where]!r}"))
        kind = match.lastgroup or ""
        value = match.group(kind)
        start = match.start(kind)
        if kind == "name" and value.lower() in _KEYWORDS:
            kind = "keyword"
            value = value.lower()
        tokens.append(Token(kind, value, start))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _at(text: str, pos: int, message: str) -> str:
    return f"baseline rule, at position {pos + 1}: {message}\n  {text}\n  {' ' * pos}^"


class Expression:
    """A parsed rule: evaluate on a frame (a boolean array) or on one record (a bool)."""

    def __init__(
        self,
        text: str,
        frame_fn: Callable[[pd.DataFrame], np.ndarray],
        record_fn: Callable[[Mapping[str, Any]], bool],
        columns: tuple[str, ...],
    ) -> None:
        self.text = text
        self._frame_fn = frame_fn
        self._record_fn = record_fn
        self.columns = columns

    def evaluate(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self._frame_fn(frame), dtype=bool)

    def evaluate_one(self, record: Mapping[str, Any]) -> bool:
        return bool(self._record_fn(record))


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


class _Parser:
    def __init__(self, text: str, roles: Mapping[str, str]) -> None:
        self.text = text
        self.roles = roles
        self.tokens = _tokenize(text)
        self.i = 0
        self.columns: list[str] = []
        self.depth = 0  # parentheses and 'not's open around the current token

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, message: str, token: Token | None = None) -> RuleError:
        return RuleError(_at(self.text, (token or self.tok).pos, message))

    def take(self, kind: str, text: str | None = None) -> Token:
        tok = self.tok
        if tok.kind != kind or (text is not None and tok.text != text):
            want = repr(text) if text else kind
            got = repr(tok.text) if tok.text else "the end of the rule"
            raise self.fail(f"expected {want}, got {got}")
        self.i += 1
        return tok

    def at_keyword(self, word: str) -> bool:
        return self.tok.kind == "keyword" and self.tok.text == word

    def parse(self):
        node = self.or_()
        if self.tok.kind != "end":
            raise self.fail(f"unexpected {self.tok.text!r}; join conditions with 'and' / 'or'")
        return node

    def or_(self):
        parts = [self.and_()]
        while self.at_keyword("or"):
            self.i += 1
            parts.append(self.and_())
        if len(parts) == 1:
            return parts[0]
        return (
            lambda f: np.logical_or.reduce([p[0](f) for p in parts]),
            lambda r: any(p[1](r) for p in parts),
        )

    def and_(self):
        parts = [self.not_()]
        while self.at_keyword("and"):
            self.i += 1
            parts.append(self.not_())
        if len(parts) == 1:
            return parts[0]
        return (
            lambda f: np.logical_and.reduce([p[0](f) for p in parts]),
            lambda r: all(p[1](r) for p in parts),
        )

    def deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(
                f"the rule nests parentheses and 'not' more than {MAX_DEPTH} deep; a baseline "
                "rule is a short heuristic: simplify it"
            )

    def not_(self):
        if self.at_keyword("not"):
            self.i += 1
            self.deeper()
            inner = self.not_()
            self.depth -= 1
            return (lambda f: ~inner[0](f), lambda r: not inner[1](r))
        return self.comparison()

    def literal(self) -> tuple[Any, Token]:
        tok = self.tok
        if tok.kind == "number":
            self.i += 1
            return float(tok.text), tok
        if tok.kind == "string":
            self.i += 1
            return re.sub(r"\\(.)", r"\1", tok.text[1:-1]), tok
        if tok.kind == "keyword" and tok.text in ("true", "false"):
            self.i += 1
            return tok.text == "true", tok
        raise self.fail("expected a number, a 'quoted string', true or false")

    def column(self) -> tuple[str, Token]:
        tok = self.tok
        if tok.kind not in ("name", "quoted"):
            raise self.fail("expected a column name")
        self.i += 1
        name = tok.text.strip("`")
        if name not in self.roles:
            close = difflib.get_close_matches(name, list(self.roles), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise self.fail(f"unknown column '{name}'{hint}", tok)
        self.columns.append(name)
        return name, tok

    def typed(self, name: str, value: Any, tok: Token, op: str) -> Any:
        """The literal checked against the column's role; a boolean column's as 1.0 / 0.0."""
        self.check_type(name, value, tok, op)
        if self.roles[name] != "boolean":
            return value
        try:
            truth = to_bool(value)
        except ValueError:
            truth = None
        if truth is None:
            raise self.fail(
                f"column '{name}' is boolean; compare it with true/false or one of "
                f"{BOOLEAN_SPELLINGS}, not {value!r}",
                tok,
            )
        return 1.0 if truth else 0.0

    def check_type(self, name: str, value: Any, tok: Token, op: str) -> None:
        role = self.roles[name]
        if role == "numeric" and not isinstance(value, float | bool):
            raise self.fail(
                f"column '{name}' is numeric; compare it with a number, not {value!r}", tok
            )
        if role == "categorical" and op in _ORDER_OPS:
            raise self.fail(f"column '{name}' is categorical; use == or != or in, not {op}", tok)
        if role == "categorical" and not isinstance(value, str):
            raise self.fail(
                f"column '{name}' is categorical; compare it with a 'quoted string'", tok
            )

    def comparison(self):
        if self.tok.kind == "punct" and self.tok.text == "(":
            self.i += 1
            self.deeper()
            node = self.or_()
            self.take("punct", ")")
            self.depth -= 1
            return node
        name, _ = self.column()
        if self.at_keyword("is"):
            self.i += 1
            negate = self.at_keyword("not")
            if negate:
                self.i += 1
            self.take("keyword", "null")
            return (
                lambda f: frame_col(f, name).isna().to_numpy() != negate,
                lambda r: _is_missing(r.get(name)) != negate,
            )
        negate = False
        if self.at_keyword("not"):
            self.i += 1
            negate = True
            if not self.at_keyword("in"):
                raise self.fail("expected 'in' after 'not'")
        if self.at_keyword("in"):
            self.i += 1
            self.take("punct", "[")
            values = []
            while True:
                value, tok = self.literal()
                values.append(self.typed(name, value, tok, "in"))
                if self.tok.kind == "punct" and self.tok.text == ",":
                    self.i += 1
                    continue
                self.take("punct", "]")
                break
            keys = {_key(v) for v in values}
            key_of = _truth_key if self.roles[name] == "boolean" else _key

            def in_frame(f: pd.DataFrame) -> np.ndarray:
                return _per_unique(frame_col(f, name), lambda v: _member(key_of(v), keys, negate))

            def in_record(r: Mapping[str, Any]) -> bool:
                value = r.get(name)
                if _is_missing(value):
                    return False
                return _member(key_of(value), keys, negate)

            return in_frame, in_record
        if self.tok.kind != "op":
            raise self.fail("expected a comparison (<, <=, >, >=, ==, !=, in, is null)")
        op = self.take("op").text
        value, tok = self.literal()
        value = self.typed(name, value, tok, op)
        fn = _OPS[op]
        boolean = self.roles[name] == "boolean"
        numeric = boolean or (self.roles[name] == "numeric" and isinstance(value, float | bool))

        def cmp_frame(f: pd.DataFrame) -> np.ndarray:
            series = frame_col(f, name)
            if numeric:  # a boolean in any spelling compares as 1.0 / 0.0
                arr = _floats(series, bool_code if boolean else number_or_nan)
                with np.errstate(invalid="ignore"):
                    return np.where(np.isnan(arr), False, fn(arr, float(value)))
            target = _key(value)
            return _per_unique(frame_col(f, name), lambda v: bool(fn(_key(v), target)))

        def cmp_record(r: Mapping[str, Any]) -> bool:
            raw = r.get(name)
            if _is_missing(raw):
                return False
            if numeric:
                number = bool_code(raw) if boolean else number_or_nan(raw)
                return not math.isnan(number) and bool(fn(number, float(value)))
            return bool(fn(_key(raw), _key(value)))

        return cmp_frame, cmp_record


def _key(value: Any) -> str:
    return category_key(value)


def _truth_key(value: Any) -> str | None:
    """A boolean's key ("1" / "0", as its literal's), ``None`` when it is not a boolean."""
    code = bool_code(value)
    return None if math.isnan(code) else _key(code)


def _member(key: str | None, keys: set[str], negate: bool) -> bool:
    return key is not None and (key in keys) != negate


def _floats(series: pd.Series, convert: Callable[[Any], float]) -> np.ndarray:
    """``convert`` per distinct value, as the record path converts each value."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    mapped = np.array([convert(u) for u in uniques] + [math.nan], dtype=float)
    return mapped[codes]


def _per_unique(series: pd.Series, test: Callable[[Any], bool]) -> np.ndarray:
    """Apply ``test`` once per distinct non-missing value; missing values give False."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    results = np.array([test(u) for u in uniques] + [False], dtype=bool)
    return results[codes]


def frame_col(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame.columns:
        return frame[name]
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def parse(text: str, roles: Mapping[str, str]) -> Expression:
    """Parse and type-check a rule against the columns and their roles.

    Raises
    ------
    RuleError
        With the position of the problem: a syntax error, an unknown column, or a literal
        whose type does not fit the column.
    """
    if not text or not text.strip():
        raise RuleError("baseline rule is empty; write a condition such as `tenure < 6`")
    parser = _Parser(text, roles)
    frame_fn, record_fn = parser.parse()
    return Expression(text, frame_fn, record_fn, tuple(dict.fromkeys(parser.columns)))
