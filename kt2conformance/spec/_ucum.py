"""UCUM unit codes as the HL7 validator checks them (`http://unitsofmeasure.org`).

HAPI FHIR's validator knows UCUM in full without a terminology server: a Coding or Quantity
whose system is UCUM must have a code the UCUM library (`org.fhir:ucum` 1.0.9, its `Lexer` and
`ExpressionParser`) can parse into known units ("The unit 'xyz' is unknown"). This is a port of
that parser's acceptance (not its arithmetic): a term of components joined by `.` and `/`, a
leading `/`, parentheses, `{annotations}` of printable ASCII, integer factors, and symbols that
are a unit or a prefix followed by a metric (or base) unit, with an optional signed exponent.
The prefixes and units are the library's `ucum-essence.xml` (profiles/r4/ucum-essence.json).
"""

from __future__ import annotations

import json
from functools import cache

from kt2conformance._paths import UCUM_ESSENCE

__all__ = ["UCUM", "ucum_problem"]

UCUM = "http://unitsofmeasure.org"
_SINGLE = {"/": "SOLIDUS", ".": "PERIOD", "(": "OPEN", ")": "CLOSE"}


class _Error(Exception):
    pass


@cache
def _model() -> tuple[tuple[str, ...], frozenset[str], dict[str, bool]]:
    data = json.loads(UCUM_ESSENCE.read_text(encoding="utf-8"))
    return tuple(data["prefixes"]), frozenset(data["base_units"]), dict(data["units"])


def _symbol_char(ch: str, digits: bool, in_brackets: bool) -> bool:
    return (digits and "0" <= ch <= "9") or ("a" <= ch <= "z") or ("A" <= ch <= "Z") \
        or ch in "[]%*^'\"_" or (in_brackets and ch == ".")


def _brackets(ch: str, inside: bool) -> bool:
    if ch == "[":
        if inside:
            raise _Error("nested [")
        return True
    if ch == "]":
        if not inside:
            raise _Error("] without [")
        return False
    return inside


def _tokens(source: str) -> list[tuple[str, str]]:
    """Lexer: (type, text) tokens, NONE-terminated."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        i += 1
        if ch in _SINGLE:
            out.append((_SINGLE[ch], ch))
        elif ch == "{":
            end = i
            while end < n and source[end] != "}":
                if not " " <= source[end] <= "~":
                    raise _Error("an annotation contains non-ASCII characters")
                end += 1
            if end >= n:
                raise _Error("unterminated annotation")
            out.append(("ANNOTATION", source[i:end]))
            i = end + 1
        elif ch in "+-":
            start = i
            while i < n and "0" <= source[i] <= "9":
                i += 1
            if i == start:
                raise _Error("a + or - must be followed by at least one digit")
            out.append(("NUMBER", ch + source[start:i]))
        elif _symbol_char(ch, True, False):
            token, is_symbol = ch, not "0" <= ch <= "9"
            inside = _brackets(ch, False)
            nxt = source[i] if i < n else ""
            inside = _brackets(nxt, inside) if nxt else inside
            while nxt and _symbol_char(nxt, not is_symbol or inside, inside):
                token += nxt
                is_symbol = is_symbol or not "0" <= nxt <= "9"
                i += 1
                nxt = source[i] if i < n else ""
                inside = _brackets(nxt, inside) if nxt else inside
            out.append(("SYMBOL" if is_symbol else "NUMBER", token))
        else:
            raise _Error(f"unexpected character {ch!r} at position {i - 1}")
    out.append(("NONE", ""))
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens, self.at = tokens, 0

    @property
    def type(self) -> str:
        return self.tokens[self.at][0]

    def consume(self) -> None:
        self.at = min(self.at + 1, len(self.tokens) - 1)

    def term(self, first: bool) -> None:
        while True:
            if first and self.type == "NONE":
                return
            if self.type == "SOLIDUS":
                self.consume()
                first = False
                continue
            if self.type == "ANNOTATION":
                self.consume()
            else:
                self.component()
            if self.type in ("NONE", "CLOSE"):
                return
            if self.type in ("SOLIDUS", "PERIOD"):
                self.consume()
            elif self.type != "ANNOTATION":
                raise _Error("expected '/' or '.'")
            first = False

    def component(self) -> None:
        kind, text = self.tokens[self.at]
        if kind == "NUMBER":
            self.consume()
        elif kind == "SYMBOL":
            self.symbol(text)
        elif kind == "OPEN":
            self.consume()
            self.term(True)
            if self.type != "CLOSE":
                raise _Error("a ( without its )")
            self.consume()
        elif kind == "NONE":
            raise _Error("unexpected end of expression looking for a symbol or a number")
        else:
            raise _Error("unexpected token looking for a symbol or a number")

    def symbol(self, text: str) -> None:
        prefixes, base, units = _model()
        known = any(text.startswith(p) and (text[len(p):] in base or units.get(text[len(p):]) is True)
                    for p in prefixes)
        if not known and text not in base and text not in units and text != "1":
            raise _Error(f"the unit {text!r} is unknown")
        self.consume()
        if self.type == "NUMBER":
            self.consume()


def ucum_problem(code: str) -> str | None:
    """Why the UCUM library refuses `code` as a unit, or None when it parses."""
    try:
        tokens = _tokens(code)
        parser = _Parser(tokens)
        parser.term(True)
        # the library stops at a `)` and asks only whether its lexer read the whole code: a
        # stray `)` as the last character passes
        if parser.type != "NONE" and parser.at != len(tokens) - 2:
            raise _Error("the expression was not parsed completely")
    except _Error as exc:
        return f"{code!r} is not a UCUM unit: {exc}"
    return None
