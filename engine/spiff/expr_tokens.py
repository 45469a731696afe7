"""Tokens of the JUEL/FEEL subset that engine/spiff/foreign_expr.py translates."""
from __future__ import annotations

import re
from dataclasses import dataclass


class Untranslatable(ValueError):
    """The text is outside the subset jzflow translates faithfully."""


@dataclass(frozen=True)
class Token:
    kind: str  # num | str | name | op | end
    text: str
    pos: int


TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>\d+(?:\.\d+)?(?![\w.]\d))
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<name>[^\W\d]\w*)
  | (?P<op>\.\.|==|!=|<=|>=|&&|\|\||[-+*/%<>=!(),.\[\]])
""", re.VERBOSE)


def tokenize(text: str, *, single_quotes: bool) -> list[Token]:
    """Split an expression into tokens; refuse any character outside the subset."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m is None:
            raise Untranslatable(f"“{text[pos]}” at position {pos + 1} is not in the translated subset")
        kind = m.lastgroup or ""
        if kind == "str" and m.group().startswith("'") and not single_quotes:
            raise Untranslatable("FEEL strings use double quotes")
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def unquote(text: str) -> str:
    """Return a string literal's value (its escapes: \\n \\t \\r \\\\ \\" \\' only)."""
    body = text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            mapped = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}.get(nxt)
            if mapped is None:
                raise Untranslatable(f"escape \\{nxt} is not in the translated subset")
            out.append(mapped)
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


__all__ = ["Token", "Untranslatable", "tokenize", "unquote"]
