"""Metadata filters: one boolean expression syntax for every engine (a subset of Milvus's).

Grammar (keywords are case-insensitive; ``&&``, ``||`` and ``!`` are accepted too)::

    expr       := or
    or         := and ( "or" and )*
    and        := unary ( "and" unary )*
    unary      := "not" unary | "(" expr ")" | comparison
    comparison := field ( "==" | "!=" | "<" | "<=" | ">" | ">=" ) literal
                | literal ( "==" | ... ) field               (flipped to the form above)
                | field [ "not" ] "in" "[" literal ( "," literal )* [","] "]"
                | field "like" string                       (% any run, _ one character)
    field      := name ( "." name | "[" string "]" )*        (a path into nested metadata)
    literal    := string ('...' or "...", backslash escapes) | int | float | true | false

Examples: ``site == 'A12' and year >= 2024``, ``date >= '2024-01-01' and date < '2025-01-01'``,
``site in ['A12', 'B7']``, ``not (x != 3) or name like 'pole%'``, ``meta.site == "A"``.

Semantics (what :meth:`Filter.matches` and therefore every engine must agree on):

* a comparison whose field is missing or null, or whose value has another type than the
  literal, is false: numbers (int and float, never bool) compare with numbers, strings with
  strings (code-point order, so ISO dates order as dates), booleans only with ``==``/``!=``;
* ``x not in [...]`` is true when ``x`` is present, comparable and equal to no element;
* ``not`` negates its operand (two-valued logic): ``not (x == 3)`` is true for an item
  without ``x``, while ``x != 3`` is false for it.

:meth:`Filter.to_milvus` renders the same expression for Milvus (``json_field`` names the
JSON column metadata lives in there).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Union

from hashlab.errors import HashlabError

__all__ = [
    "And",
    "Compare",
    "Filter",
    "FilterError",
    "In",
    "Like",
    "MAX_FILTER_DEPTH",
    "MAX_FILTER_LENGTH",
    "Not",
    "Or",
    "parse_filter",
]

#: longer filter texts are refused before parsing (they come from untrusted clients)
MAX_FILTER_LENGTH = 8192
#: parentheses/``not`` nested deeper than this are refused (no RecursionError on hostile input)
MAX_FILTER_DEPTH = 64

class FilterError(HashlabError, ValueError):
    """A filter expression that does not parse; ``position`` is the 0-based column."""

    def __init__(self, message: str, text: str = "", position: int = 0) -> None:
        self.text = text
        self.position = position
        shown = text if len(text) <= 200 else text[:200] + "..."
        super().__init__(f"invalid filter at column {position + 1}: {message} (in {shown!r})")


Literal = Union[str, int, float, bool]  # noqa: UP007 - used at run time in isinstance-free code
_MISSING = object()


# ------------------------------------------------------------------------ syntax tree ----
class Filter:
    """A parsed filter: ``matches(metadata)`` decides, ``to_milvus()`` renders for Milvus."""

    def matches(self, metadata: dict[str, Any] | None) -> bool:
        raise NotImplementedError

    def to_milvus(self, json_field: str | None = None) -> str:
        raise NotImplementedError

    def fields(self) -> set[tuple[str, ...]]:
        """Every field path the filter reads."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.to_milvus()


def _lookup(metadata: Any, path: tuple[str, ...]) -> Any:
    value = metadata
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return _MISSING if value is None else value


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return None if isinstance(value, float) and math.isnan(value) else "number"
    if isinstance(value, str):
        return "str"
    return None


def _render_literal(value: Literal) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _render_field(path: tuple[str, ...], json_field: str | None) -> str:
    head, rest = (json_field, path) if json_field else (path[0], path[1:])
    return head + "".join(f"[{_render_literal(key)}]" for key in rest)


_OPS = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_FLIPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


@dataclass(frozen=True)
class Compare(Filter):
    path: tuple[str, ...]
    op: str
    value: Literal

    def matches(self, metadata: dict[str, Any] | None) -> bool:
        found = _lookup(metadata, self.path)
        if found is _MISSING or _kind(found) != _kind(self.value):
            return False
        return bool(_OPS[self.op](found, self.value))

    def to_milvus(self, json_field: str | None = None) -> str:
        return f"{_render_field(self.path, json_field)} {self.op} {_render_literal(self.value)}"

    def fields(self) -> set[tuple[str, ...]]:
        return {self.path}


@dataclass(frozen=True)
class In(Filter):
    path: tuple[str, ...]
    values: tuple[Literal, ...]
    negated: bool = False

    def matches(self, metadata: dict[str, Any] | None) -> bool:
        found = _lookup(metadata, self.path)
        kind = _kind(found) if found is not _MISSING else None
        if kind is None:
            return False
        comparable = [v for v in self.values if _kind(v) == kind]
        if self.negated:
            return all(found != v for v in comparable)
        return any(found == v for v in comparable)

    def to_milvus(self, json_field: str | None = None) -> str:
        items = ", ".join(_render_literal(v) for v in self.values)
        word = "not in" if self.negated else "in"
        return f"{_render_field(self.path, json_field)} {word} [{items}]"

    def fields(self) -> set[tuple[str, ...]]:
        return {self.path}


def _like_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    escaped = False
    for char in pattern:
        if escaped:
            parts.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    if escaped:
        parts.append(re.escape("\\"))
    return re.compile("".join(parts), re.DOTALL)


@dataclass(frozen=True)
class Like(Filter):
    path: tuple[str, ...]
    pattern: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", _like_regex(self.pattern))

    def matches(self, metadata: dict[str, Any] | None) -> bool:
        found = _lookup(metadata, self.path)
        return isinstance(found, str) and self._regex.fullmatch(found) is not None  # type: ignore[attr-defined]

    def to_milvus(self, json_field: str | None = None) -> str:
        return f"{_render_field(self.path, json_field)} like {_render_literal(self.pattern)}"

    def fields(self) -> set[tuple[str, ...]]:
        return {self.path}


@dataclass(frozen=True)
class Not(Filter):
    operand: Filter

    def matches(self, metadata: dict[str, Any] | None) -> bool:
        return not self.operand.matches(metadata)

    def to_milvus(self, json_field: str | None = None) -> str:
        return f"not ({self.operand.to_milvus(json_field)})"

    def fields(self) -> set[tuple[str, ...]]:
        return self.operand.fields()


@dataclass(frozen=True)
class And(Filter):
    operands: tuple[Filter, ...]

    def matches(self, metadata: dict[str, Any] | None) -> bool:
        return all(part.matches(metadata) for part in self.operands)

    def to_milvus(self, json_field: str | None = None) -> str:
        return " and ".join(f"({part.to_milvus(json_field)})" for part in self.operands)

    def fields(self) -> set[tuple[str, ...]]:
        return set().union(*(part.fields() for part in self.operands))


@dataclass(frozen=True)
class Or(Filter):
    operands: tuple[Filter, ...]

    def matches(self, metadata: dict[str, Any] | None) -> bool:
        return any(part.matches(metadata) for part in self.operands)

    def to_milvus(self, json_field: str | None = None) -> str:
        return " or ".join(f"({part.to_milvus(json_field)})" for part in self.operands)

    def fields(self) -> set[tuple[str, ...]]:
        return set().union(*(part.fields() for part in self.operands))


# ------------------------------------------------------------------------ tokens ---------
@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "str", "num", "op", "kw", "end"
    value: Any
    position: int


_KEYWORDS = {"and", "or", "not", "in", "like", "true", "false"}
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SYMBOLS = ("==", "!=", "<=", ">=", "&&", "||", "<", ">", "(", ")", "[", "]", ",", ".", "!")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}


def _tokens(text: str) -> Iterator[_Token]:
    i = 0
    previous_is_value = False
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
            continue
        if char in "'\"":
            start, i, chars = i, i + 1, []
            while True:
                if i >= len(text):
                    raise FilterError("unterminated string", text, start)
                if text[i] == char:
                    break
                if text[i] == "\\":
                    if i + 1 >= len(text) or text[i + 1] not in _ESCAPES:
                        raise FilterError("unknown escape in string", text, i)
                    chars.append(_ESCAPES[text[i + 1]])
                    i += 2
                    continue
                chars.append(text[i])
                i += 1
            yield _Token("str", "".join(chars), start)
            i += 1
            previous_is_value = True
            continue
        # a sign right after a value is an operator we do not have, never part of a number
        signed_after_value = previous_is_value and char in "+-"
        number = None if signed_after_value else _NUMBER.match(text, i)
        if number and (char.isdigit() or char in "+-."):
            literal = number.group()
            end = number.end()
            if end < len(text) and (text[end].isalnum() or text[end] == "_"):
                raise FilterError(f"malformed number {text[i : end + 1]!r}", text, i)
            is_float = any(c in literal for c in ".eE")
            value: int | float = float(literal) if is_float else int(literal)
            if isinstance(value, float) and not math.isfinite(value):
                raise FilterError(f"number {literal!r} is out of range", text, i)
            yield _Token("num", value, i)
            i = end
            previous_is_value = True
            continue
        name = _NAME.match(text, i)
        if name:
            word = name.group()
            lowered = word.lower()
            kind = "kw" if lowered in _KEYWORDS else "name"
            yield _Token(kind, lowered if kind == "kw" else word, i)
            i = name.end()
            previous_is_value = kind == "name" or lowered in ("true", "false")
            continue
        for symbol in _SYMBOLS:
            if text.startswith(symbol, i):
                mapped = {"&&": "and", "||": "or", "!": "not"}.get(symbol)
                yield _Token("kw", mapped, i) if mapped else _Token("op", symbol, i)
                i += len(symbol)
                previous_is_value = symbol in (")", "]")
                break
        else:
            raise FilterError(f"unexpected character {char!r}", text, i)
    yield _Token("end", None, len(text))


# ------------------------------------------------------------------------ parser ---------
class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = list(_tokens(text))
        self.i = 0
        self.depth = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.i]

    def error(self, message: str, token: _Token | None = None) -> FilterError:
        token = token or self.token
        found = "the end of the filter" if token.kind == "end" else repr(self._shown(token))
        return FilterError(f"{message}, found {found}", self.text, token.position)

    @staticmethod
    def _shown(token: _Token) -> str:
        if token.kind == "str":
            return _render_literal(token.value)
        if token.kind == "num":
            return repr(token.value)
        return str(token.value)

    def take(self) -> _Token:
        token = self.token
        self.i += 1
        return token

    def at(self, kind: str, value: Any = None) -> bool:
        token = self.token
        return token.kind == kind and (value is None or token.value == value)

    def parse(self) -> Filter:
        result = self.parse_or()
        if not self.at("end"):
            raise self.error("expected 'and', 'or' or the end of the filter")
        return result

    def parse_or(self) -> Filter:
        parts = [self.parse_and()]
        while self.at("kw", "or"):
            self.take()
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def parse_and(self) -> Filter:
        parts = [self.parse_unary()]
        while self.at("kw", "and"):
            self.take()
            parts.append(self.parse_unary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def parse_unary(self) -> Filter:
        self.depth += 1
        if self.depth > MAX_FILTER_DEPTH:
            raise self.error(f"nesting deeper than {MAX_FILTER_DEPTH} levels")
        try:
            if self.at("kw", "not"):
                self.take()
                return Not(self.parse_unary())
            if self.at("op", "("):
                self.take()
                inner = self.parse_or()
                if not self.at("op", ")"):
                    raise self.error("expected ')'")
                self.take()
                return inner
            return self.parse_comparison()
        finally:
            self.depth -= 1

    def parse_field(self) -> tuple[str, ...]:
        token = self.take()
        path = [token.value]
        while self.at("op", ".") or self.at("op", "["):
            if self.take().value == ".":
                if not self.at("name"):
                    raise self.error("expected a field name after '.'")
                path.append(self.take().value)
            else:
                if not self.at("str"):
                    raise self.error("expected a quoted key inside '[...]'")
                path.append(self.take().value)
                if not self.at("op", "]"):
                    raise self.error("expected ']'")
                self.take()
        return tuple(path)

    def parse_literal(self, what: str) -> Literal:
        token = self.token
        if token.kind in ("str", "num"):
            return self.take().value
        if token.kind == "kw" and token.value in ("true", "false"):
            self.take()
            return token.value == "true"
        raise self.error(f"expected {what}")

    def parse_comparison(self) -> Filter:
        token = self.token
        if token.kind == "name":
            path = self.parse_field()
            return self.parse_predicate(path)
        is_bool = token.kind == "kw" and token.value in ("true", "false")
        if token.kind in ("str", "num") or is_bool:
            value = self.parse_literal("a value")
            if not (self.at("op") and self.token.value in _OPS):
                raise self.error("expected a comparison operator after the value")
            op_token = self.take()
            if not self.at("name"):
                raise self.error(f"expected a field name after {op_token.value!r}")
            path = self.parse_field()
            return self.make_compare(path, _FLIPPED[op_token.value], value, op_token)
        raise self.error("expected a field name, 'not' or '('")

    def make_compare(self, path: tuple[str, ...], op: str, value: Literal, at: _Token) -> Filter:
        if op not in ("==", "!=") and isinstance(value, bool):
            raise FilterError(
                f"{op!r} orders numbers or strings, not the boolean {_render_literal(value)}",
                self.text,
                at.position,
            )
        return Compare(path, op, value)

    def parse_predicate(self, path: tuple[str, ...]) -> Filter:
        if self.at("op") and self.token.value in _OPS:
            op_token = self.take()
            value = self.parse_literal(f"a value after {op_token.value!r}")
            return self.make_compare(path, op_token.value, value, op_token)
        negated = False
        if self.at("kw", "not"):
            self.take()
            negated = True
            if not self.at("kw", "in"):
                raise self.error("expected 'in' after 'not'")
        if self.at("kw", "in"):
            self.take()
            if not self.at("op", "["):
                raise self.error("expected '[' after 'in'")
            self.take()
            values: list[Literal] = []
            while not self.at("op", "]"):
                values.append(self.parse_literal("a value in the list"))
                if self.at("op", ","):
                    self.take()
                elif not self.at("op", "]"):
                    raise self.error("expected ',' or ']' in the list")
            self.take()
            return In(path, tuple(values), negated)
        if self.at("kw", "like"):
            self.take()
            if not self.at("str"):
                raise self.error("expected a quoted pattern after 'like'")
            return Like(path, self.take().value)
        shown = ".".join(path)
        raise self.error(f"expected an operator (==, !=, <, <=, >, >=, in, like) after {shown!r}")


def parse_filter(text: str | Filter) -> Filter:
    """Parse a filter expression; raises :class:`FilterError` naming the column at fault."""
    if isinstance(text, Filter):
        return text
    if not isinstance(text, str):
        raise FilterError(f"a filter is a string, got {type(text).__name__}")
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(f"longer than {MAX_FILTER_LENGTH} characters", text[:40], 0)
    if not text.strip():
        raise FilterError("the filter is empty", text, 0)
    return _Parser(text).parse()
