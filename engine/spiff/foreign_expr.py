"""Translate the simple part of JUEL (Camunda 7, Activiti, Flowable) and FEEL (Camunda 8, DMN) into Python.

A real small parser: a tokenizer, a recursive-descent grammar, and Python's own `ast` to write the result
(`ast.unparse`), so nothing is ever substituted textually. The subset is what has one meaning in both
languages: names and dotted names over task data, number, string, boolean and null literals, arithmetic,
comparisons, `and`/`or`/`not`, and for FEEL `between`, `in` and the DMN unary tests (comparisons, ranges
`[1..10]`, lists, `not(…)`, `-`). Anything else — method calls, functions, filters, `if`, `for`, names
with spaces, string `+` — raises Untranslatable with the reason, and the deploy is refused naming the
element and line.
"""
from __future__ import annotations

import ast
import keyword

from engine.spiff.expr_tokens import Token, Untranslatable, tokenize, unquote

MAX_LENGTH = 4000  # characters of one expression
MAX_DEPTH = 40  # nested parentheses and prefixes (the parser recurses on them)
DMN_INPUT = "__jz_dmn_input__"  # stands for SpiffWorkflow's `?` in a translated DMN input cell


COMPARE = {"==": ast.Eq, "!=": ast.NotEq, "<": ast.Lt, "<=": ast.LtE, ">": ast.Gt, ">=": ast.GtE}
JUEL_WORDS = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "and": "&&", "or": "||",
              "not": "!", "div": "/", "mod": "%"}
JUEL_REFUSED = {"empty": "JUEL “empty” has no single Python meaning", "instanceof": "“instanceof” is Java"}
FEEL_REFUSED = {"if", "then", "else", "for", "return", "some", "every", "satisfies", "function", "instance"}
JUEL_OPERATOR_WORDS = frozenset(JUEL_WORDS) - {"not"}
FEEL_OPERATOR_WORDS = frozenset({"and", "or", "between", "in"})
ARITH = {"+": ast.Add, "-": ast.Sub, "*": ast.Mult, "/": ast.Div, "%": ast.Mod}


class _Parser:
    """Recursive descent over one dialect (juel | feel); each rule returns a Python AST node."""

    def __init__(self, text: str, dialect: str) -> None:
        if len(text) > MAX_LENGTH:
            raise Untranslatable(f"longer than {MAX_LENGTH} characters")
        self.dialect = dialect
        self.depth = 0
        self.tokens = tokenize(text, single_quotes=dialect == "juel")
        self.i = 0

    # --- token helpers
    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def op(self) -> str:
        """Return the current token as an operator in the common spelling ('' when it is not one)."""
        t = self.peek()
        if t.kind == "op":
            return "==" if t.text == "=" and self.dialect == "feel" else t.text
        if t.kind == "name" and self.dialect == "juel" and t.text in JUEL_WORDS:
            return JUEL_WORDS[t.text]
        if t.kind == "name" and self.dialect == "feel" and t.text in ("and", "or"):
            return {"and": "&&", "or": "||"}[t.text]
        return ""

    def take(self) -> Token:
        t = self.peek()
        self.i += 1
        return t

    def expect(self, text: str) -> None:
        if self.op() != text and self.peek().text != text:
            found = self.peek().text or "the end"
            raise Untranslatable(f"expected “{text}” but found “{found}”")
        self.take()

    def done(self) -> None:
        if self.peek().kind != "end":
            raise Untranslatable(f"“{self.peek().text}” at position {self.peek().pos + 1} is not in the translated subset")

    # --- grammar
    def expression(self) -> ast.expr:
        return self.disjunction()

    def disjunction(self) -> ast.expr:
        values = [self.conjunction()]
        while self.op() == "||":
            self.take()
            values.append(self.conjunction())
        return values[0] if len(values) == 1 else ast.BoolOp(ast.Or(), values)

    def conjunction(self) -> ast.expr:
        values = [self.comparison()]
        while self.op() == "&&":
            self.take()
            values.append(self.comparison())
        return values[0] if len(values) == 1 else ast.BoolOp(ast.And(), values)

    def comparison(self) -> ast.expr:
        left = self.additive()
        op = self.op()
        if op == "!" and self.dialect == "feel":
            raise Untranslatable("“!” is not FEEL")
        if op in COMPARE:
            self.take()
            right = self.additive()
            if self.op() in COMPARE:
                raise Untranslatable("chained comparisons are not translated: write “and”")
            return ast.Compare(left, [COMPARE[op]()], [right])
        if self.dialect == "feel" and self.peek().text == "between":
            self.take()
            low = self.additive()
            self.expect("and")
            high = self.additive()
            return ast.Compare(low, [ast.LtE(), ast.LtE()], [left, high])
        if self.dialect == "feel" and self.peek().text == "in":
            self.take()
            return self.unary_tests_on(left)
        return left

    def additive(self) -> ast.expr:
        node = self.multiplicative()
        while self.op() in ("+", "-"):
            op = self.take().text
            right = self.multiplicative()
            if op == "+" and any(isinstance(n, ast.Constant) and isinstance(n.value, str) for n in (node, right)):
                raise Untranslatable("“+” on strings means something else in JUEL/FEEL than in Python")
            node = ast.BinOp(node, ARITH[op](), right)
        return node

    def multiplicative(self) -> ast.expr:
        node = self.unary()
        while self.op() in ("*", "/", "%"):
            op = self.take()
            if op.text == "%" and self.dialect == "feel":
                raise Untranslatable("“%” is not FEEL")
            node = ast.BinOp(node, ARITH[self.op_of(op)](), self.unary())
        return node

    def op_of(self, token: Token) -> str:
        return JUEL_WORDS.get(token.text, token.text) if token.kind == "name" else token.text

    def unary(self) -> ast.expr:
        op = self.op()
        feel_not = self.dialect == "feel" and self.peek().text == "not" and self.peek(1).text == "("
        if op != "-" and not (op == "!" and self.dialect == "juel") and not feel_not:
            return self.primary()
        self.depth += 1  # a chain of prefixes recurses like parentheses do
        if self.depth > MAX_DEPTH:
            raise Untranslatable(f"nested deeper than {MAX_DEPTH} prefixes or parentheses")
        try:
            self.take()
            if op == "-":
                return ast.UnaryOp(ast.USub(), self.unary())
            if not feel_not:
                return ast.UnaryOp(ast.Not(), self.unary())
            self.expect("(")
            inner = self.expression()
            self.expect(")")
            return ast.UnaryOp(ast.Not(), inner)
        finally:
            self.depth -= 1

    def primary(self) -> ast.expr:
        t = self.take()
        if t.kind == "num":
            return ast.Constant(float(t.text) if "." in t.text else int(t.text))
        if t.kind == "str":
            return ast.Constant(unquote(t.text))
        if t.kind == "op" and t.text == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise Untranslatable(f"nested deeper than {MAX_DEPTH} prefixes or parentheses")
            try:
                inner = self.expression()
                self.expect(")")
            finally:
                self.depth -= 1
            return inner
        if t.kind == "name":
            if t.text in ("true", "false"):
                return ast.Constant(t.text == "true")
            if t.text == "null":
                return ast.Constant(None)
            return self.path(t)
        raise Untranslatable(f"“{t.text or 'the end'}” at position {t.pos + 1} is not in the translated subset")

    def path(self, first: Token) -> ast.expr:
        node: ast.expr = ast.Name(self.identifier(first.text), ast.Load())
        while self.peek().text == "." and self.peek(1).kind == "name":
            self.take()
            key = self.take().text
            if key.startswith("_"):
                raise Untranslatable(f"“.{key}” is not a field of task data")
            node = ast.Subscript(node, ast.Constant(key), ast.Load())  # task data are dicts
        if self.peek().text in ("(", "["):
            raise Untranslatable(f"calls, indexes and filters (“{first.text}{self.peek().text}…”) are not translated")
        nxt = self.peek()
        if nxt.kind in ("num", "str") or (nxt.kind == "name" and nxt.text not in self.words()):
            raise Untranslatable(f"“{first.text} {self.peek().text}”: names with spaces are not translated")
        return node

    def words(self) -> frozenset[str]:
        """Return the operator words of the dialect (a name followed by one of these is not a spaced name)."""
        return JUEL_OPERATOR_WORDS if self.dialect == "juel" else FEEL_OPERATOR_WORDS

    def identifier(self, name: str) -> str:
        if name in JUEL_REFUSED and self.dialect == "juel":
            raise Untranslatable(JUEL_REFUSED[name])
        if name in FEEL_REFUSED and self.dialect == "feel":
            raise Untranslatable(f"FEEL “{name}” is not translated")
        if keyword.iskeyword(name) or not name.isidentifier() or name.startswith("_"):
            raise Untranslatable(f"“{name}” cannot be a Python variable name")
        return name

    # --- DMN unary tests (FEEL)
    def unary_tests_on(self, subject: ast.expr) -> ast.expr:
        if self.peek().text == "[" and self._list_literal():
            self.take()
            items = [self.endpoint()]
            while self.peek().text == ",":
                self.take()
                items.append(self.endpoint())
            self.expect("]")
            return ast.Compare(subject, [ast.In()], [ast.Tuple(items, ast.Load())])
        if self.peek().text == "(" and not self._interval_ahead():
            self.take()
            node = self.positive_tests(subject)
            self.expect(")")
            return node
        return self.positive_test(subject)

    def _list_literal(self) -> bool:
        depth, j = 0, self.i
        while j < len(self.tokens):
            text = self.tokens[j].text
            if text == "..":
                return False
            if text in ("[", "("):
                depth += 1
            elif text in ("]", ")"):
                depth -= 1
                if depth == 0:
                    return True
            j += 1
        return True

    def _interval_ahead(self) -> bool:
        j = self.i + 1
        while j < len(self.tokens) and self.tokens[j].text not in (",", ")", "]", "[", ".."):
            j += 1
        return j < len(self.tokens) and self.tokens[j].text == ".."

    def unary_tests(self, subject: ast.expr) -> ast.expr | None:
        """Parse a whole DMN input cell; None for “-” (any value)."""
        if self.peek().text == "-" and self.peek(1).kind == "end":
            self.take()
            return None
        if self.peek().text == "not" and self.peek(1).text == "(":
            self.take()
            self.take()
            node = self.positive_tests(subject)
            self.expect(")")
            self.done()
            return ast.UnaryOp(ast.Not(), node)
        node = self.positive_tests(subject)
        self.done()
        return node

    def positive_tests(self, subject: ast.expr) -> ast.expr:
        tests = [self.positive_test(subject)]
        while self.peek().text == ",":
            self.take()
            tests.append(self.positive_test(subject))
        equal = [t.comparators[0] for t in tests if isinstance(t, ast.Compare) and isinstance(t.ops[0], ast.Eq)
                 and len(t.ops) == 1]
        if len(tests) > 1 and len(equal) == len(tests):
            return ast.Compare(subject, [ast.In()], [ast.Tuple(equal, ast.Load())])
        return tests[0] if len(tests) == 1 else ast.BoolOp(ast.Or(), tests)

    def positive_test(self, subject: ast.expr) -> ast.expr:
        op = self.op()
        if op in ("<", "<=", ">", ">="):
            self.take()
            return ast.Compare(subject, [COMPARE[op]()], [self.endpoint()])
        if op == "==":
            self.take()
        if self.peek().text in ("[", "(", "]") and self._interval_ahead():
            return self.interval(subject)
        return ast.Compare(subject, [ast.Eq()], [self.endpoint()])

    def interval(self, subject: ast.expr) -> ast.expr:
        opening = self.take().text
        low = self.endpoint()
        self.expect("..")
        high = self.endpoint()
        closing = self.take().text
        if closing not in ("]", ")", "["):
            raise Untranslatable(f"a range ends with “]” or “)”, not “{closing}”")
        low_op: ast.cmpop = ast.LtE() if opening == "[" else ast.Lt()
        high_op: ast.cmpop = ast.LtE() if closing == "]" else ast.Lt()
        return ast.Compare(low, [low_op, high_op], [subject, high])

    def endpoint(self) -> ast.expr:
        if self.op() == "-":
            self.take()
            t = self.take()
            if t.kind != "num":
                raise Untranslatable("“-” before something that is not a number")
            return ast.Constant(-(float(t.text) if "." in t.text else int(t.text)))
        t = self.peek()
        if t.kind in ("num", "str") or t.text in ("true", "false", "null"):
            return self.primary()
        if t.kind == "name":
            return self.path(self.take())
        raise Untranslatable(f"“{t.text or 'the end'}” is not a value")


def _unparse(node: ast.expr) -> str:
    tree = ast.fix_missing_locations(ast.Expression(node))
    text = ast.unparse(tree)
    compile(text, "<translated>", "eval")  # the result is Python or nothing
    return text


def juel(text: str) -> str:
    """Translate `${…}` / `#{…}` (or a bare JUEL expression) into a Python expression.

    Raises: Untranslatable
    """
    body = text.strip()
    if body[:2] in ("${", "#{"):
        if not body.endswith("}") or body.count("${") + body.count("#{") > 1:
            raise Untranslatable("text around or between ${…} (a composite expression) is not translated")
        body = body[2:-1]
    if not body.strip():
        raise Untranslatable("empty expression")
    p = _Parser(body, "juel")
    node = p.expression()
    p.done()
    return _unparse(node)


def feel(text: str) -> str:
    """Translate a FEEL expression (with or without Camunda 8's leading `=`) into a Python expression.

    Raises: Untranslatable
    """
    body = text.strip()
    body = body[1:] if body.startswith("=") else body
    if not body.strip():
        raise Untranslatable("empty expression")
    p = _Parser(body, "feel")
    node = p.expression()
    p.done()
    return _unparse(node)


def feel_unary_tests(text: str) -> str:
    """Translate a DMN input cell in FEEL into the `?` form SpiffWorkflow's DMN engine evaluates ('-' stays).

    Raises: Untranslatable
    """
    body = text.strip()
    if not body or body == "-":
        return "-"
    if DMN_INPUT in body or "?" in body:
        raise Untranslatable("“?” is not FEEL")
    p = _Parser(body, "feel")
    node = p.unary_tests(ast.Name(DMN_INPUT, ast.Load()))
    if node is None:
        return "-"
    return _unparse(node).replace(DMN_INPUT, "?")


def expression(text: str) -> tuple[str, str]:
    """Translate a JUEL (`${…}`) or FEEL (`=…`) text; return (dialect, Python).

    Raises: Untranslatable
    """
    stripped = text.strip()
    if stripped[:2] in ("${", "#{"):
        return "JUEL", juel(stripped)
    return "FEEL", feel(stripped)


__all__ = ["Untranslatable", "expression", "feel", "feel_unary_tests", "juel", "tokenize"]
