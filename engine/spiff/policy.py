"""What the script sandbox refuses at compile time: the RestrictedPython policy and the compiled-code cache.

Refused (SandboxViolation): imports, names and attributes starting with "_", class definitions, calls to
exec/eval/compile/open/getattr/type/vars/globals/locals and the like, and RestrictedPython's own list
(nonlocal, async, except*, match, ...). The policy also rewrites code so that engine.spiff.sandbox can
meter it: a tick at each loop iteration and call, size guards around `**`, `*`, `<<`, `+`, `%`, format
specs and `x[k] op= v`, and engine.spiff.nesting's guards around the steps that walk nested values
(comparisons, dict keys and set members, subscripts by a computed key, f-string fields, `-`, `&`, `|`, `^`).
"""
from __future__ import annotations

import ast
import functools
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from RestrictedPython.compile import compile_restricted_eval, compile_restricted_exec
from RestrictedPython.transformer import (
    IOPERATOR_TO_STR,
    RestrictingNodeTransformer,
    copy_locations,
)

TICK: Final = "_jz_tick_"  # the global the sandbox binds to its budget's spend()
_FORBIDDEN_CALLS: Final = frozenset({
    "eval", "exec", "compile", "open", "getattr", "setattr", "delattr", "type", "vars", "globals",
    "locals", "dir", "input", "breakpoint", "help", "memoryview", "object", "super", "exit", "quit",
})
_OP_GUARDS: Final[Mapping[type[ast.operator], str]] = {
    ast.Pow: "_jz_pow_", ast.Mult: "_jz_mul_", ast.LShift: "_jz_lshift_", ast.Add: "_jz_add_",
    ast.Mod: "_jz_mod_", ast.Sub: "_jz_sub_", ast.BitAnd: "_jz_and_", ast.BitOr: "_jz_or_", ast.BitXor: "_jz_xor_",
}
_COMPARE_OPS: Final[Mapping[type[ast.cmpop], str]] = {  # the guard engine.spiff.nesting binds to _jz_<name>_
    ast.Eq: "eq", ast.NotEq: "ne", ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.In: "in",
    ast.NotIn: "not_in",
}
_ERROR_LINE: Final = re.compile(r"^Line (\d+): (.*)$", re.DOTALL)


class SandboxViolation(Exception):
    """Code refused by the sandbox at compile time."""

    def __init__(self, message: str, lineno: int | None = None) -> None:
        super().__init__(f"line {lineno}: {message}" if lineno else message)
        self.message = message
        self.lineno = lineno


def _number(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def _scalar(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and not isinstance(node.value, (tuple, frozenset))


def _call(name: str, args: list[ast.expr], node: Any) -> ast.Call:
    call = ast.Call(ast.Name(name, ast.Load()), args, [])
    copy_locations(call, node)
    return call


def _plainly_numeric(node: ast.BinOp) -> bool:
    """Tell whether a `+`, `-`, `&`, `|`, `^` or `%` cannot build a sequence, a format or a set of a dict view.

    A number literal on the deciding side saves the guard's call in the arithmetic of loops (`total + 1`,
    `7 % n`); `*`, `**` and `<<` stay guarded.
    """
    if isinstance(node.op, (ast.Add, ast.Sub, ast.BitAnd, ast.BitOr, ast.BitXor)):
        return _number(node.left) or _number(node.right)
    if isinstance(node.op, ast.Mod):
        return _number(node.left)
    return False


class _Policy(RestrictingNodeTransformer):
    """Restrict like RestrictedPython, refuse imports and classes, meter loops and calls."""

    def visit_Name(self, node: ast.Name) -> Any:
        # Stores and deletes count too: execute() writes back exactly the names a script touches.
        self.used_names[node.id] = True
        return super().visit_Name(node)

    def visit_Import(self, node: ast.AST) -> None:
        """Refuse imports and class definitions (Python code only, no modules or metaclasses)."""
        self.not_allowed(node)

    visit_ImportFrom = visit_ClassDef = visit_Import

    def visit_Call(self, node: ast.Call) -> Any:
        if isinstance(node.func, ast.Name) and node.func.id in _FORBIDDEN_CALLS:
            self.error(node, f'"{node.func.id}" is not available in scripts.')
        return super().visit_Call(node)

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        node = self.node_contents_visit(node)
        guard = _OP_GUARDS.get(type(node.op))
        if guard is None or _plainly_numeric(node):
            return node
        call = ast.Call(ast.Name(guard, ast.Load()), [node.left, node.right], [])
        copy_locations(call, node)
        return call

    def visit_Compare(self, node: ast.Compare) -> Any:
        node = self.node_contents_visit(node)
        ops = [_COMPARE_OPS.get(type(op)) for op in node.ops]
        if None in ops:  # `is`, `is not` compare identities
            return node
        op, right = ops[0], node.comparators[0]
        if len(ops) > 1:  # a chain `a < b < c`: each operand on its own
            node.left = _call("_jz_flat_", [node.left], node) if not _scalar(node.left) else node.left
            node.comparators = [c if _scalar(c) else _call("_jz_flat_", [c], node) for c in node.comparators]
            return node
        literals = isinstance(right, (ast.Tuple, ast.List)) and all(_scalar(e) for e in right.elts)
        if _scalar(node.left) or (_scalar(right) if op not in ("in", "not_in") else literals):
            return node  # compared with a scalar: one step each, nothing nested is walked
        return _call(f"_jz_{op}_", [node.left, right], node)

    def visit_Set(self, node: ast.Set) -> Any:
        node = super().visit_Set(node)  # type: ignore[assignment]  # the node itself
        for e in node.elts:
            if isinstance(e, ast.Starred):  # `{*xs}` hashes every item of xs
                e.value = _call("_jz_members_", [e.value], e)
        node.elts = [e if _scalar(e) or isinstance(e, ast.Starred) else _call("_jz_key_", [e], e) for e in node.elts]
        return node

    def visit_Dict(self, node: ast.Dict) -> Any:
        node = super().visit_Dict(node)  # type: ignore[assignment]  # the node itself
        node.keys = [k if k is None or _scalar(k) else _call("_jz_key_", [k], k) for k in node.keys]
        return node

    def visit_SetComp(self, node: ast.SetComp) -> Any:
        node = super().visit_SetComp(node)  # type: ignore[assignment]  # the node itself
        node.elt = _call("_jz_key_", [node.elt], node.elt)
        return node

    def visit_DictComp(self, node: ast.DictComp) -> Any:
        node = super().visit_DictComp(node)  # type: ignore[assignment]  # the node itself
        node.key = _call("_jz_key_", [node.key], node.key)
        return node

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        key = node.slice
        new: Any = super().visit_Subscript(node)
        if _scalar(key) or isinstance(key, ast.Slice):
            return new
        if isinstance(new, ast.Call):  # a load: `_getitem_(ob, key)`; a computed key may be a huge tuple
            guard = ast.Name("_jz_getitem_", ast.Load())
            copy_locations(guard, new.func)
            new.func = guard
        else:
            new.slice = _call("_jz_key_", [new.slice], new.slice)
        return new

    def visit_FormattedValue(self, node: ast.FormattedValue) -> Any:
        node = self.node_contents_visit(node)
        if node.format_spec is None:
            node.value = _call("_jz_shown_", [node.value], node.value)
            return node
        # f'{x:>999999999}' allocates in one C step: route a field with a spec through the width guard.
        call = ast.Call(ast.Name("_jz_format_", ast.Load()),
                        [node.value, ast.Constant(node.conversion), node.format_spec], [])
        copy_locations(call, node)
        new = ast.FormattedValue(call, -1, None)
        copy_locations(new, node)
        return new

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        target = node.target
        if not isinstance(target, ast.Subscript):
            return super().visit_AugAssign(node)
        # RestrictedPython refuses `totals[k] += 1`; scripts need it, so route it through the guards.
        if any(isinstance(n, ast.Slice) for n in ast.walk(target.slice)):
            self.error(node, "Augmented assignment of slices is not allowed.")
            return node
        args = [self.visit(target.value), self.visit(target.slice),
                ast.Constant(IOPERATOR_TO_STR[type(node.op)]), self.visit(node.value)]
        stmt = ast.Expr(ast.Call(ast.Name("_jz_augitem_", ast.Load()), args, []))
        copy_locations(stmt, node)
        return stmt

    def visit_For(self, node: ast.For) -> Any:
        return self._meter(super().visit_For(node))

    def visit_While(self, node: ast.While) -> Any:
        return self._meter(super().visit_While(node))

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        self.used_names[node.name] = True
        return self._meter(super().visit_FunctionDef(node))

    def visit_Lambda(self, node: ast.Lambda) -> Any:
        new: Any = super().visit_Lambda(node)
        tick = ast.Call(ast.Name(TICK, ast.Load()), [], [])
        new.body = ast.BoolOp(ast.Or(), [tick, new.body])  # the tick returns None
        copy_locations(new.body, node)
        return new

    def _meter(self, node: Any) -> Any:
        stmt = ast.Expr(ast.Call(ast.Name(TICK, ast.Load()), [], []))
        copy_locations(stmt, node)
        node.body.insert(0, stmt)
        return node


@dataclass(frozen=True, slots=True)
class Compiled:
    code: types.CodeType | None
    names: tuple[str, ...] = ()  # in source order, so written-back keys keep a stable order
    error: str = ""
    lineno: int | None = None
    syntax: bool = False

    def unwrap(self) -> types.CodeType:
        """Return the code or raise the refusal."""
        if self.code is None:
            raise SandboxViolation(self.error, self.lineno)
        return self.code


@functools.lru_cache(maxsize=2048)
def compile_code(text: str, mode: str) -> Compiled:
    """Compile under the policy; refusals are cached too, so repeated bad text costs nothing."""
    # Python's eval() skips leading blanks, and BPMN XML often indents conditions.
    source = text.lstrip(" \t") if mode == "eval" else text
    try:
        tree: Any = ast.parse(source, "<string>", mode)
        compile_restricted = compile_restricted_eval if mode == "eval" else compile_restricted_exec
        result = compile_restricted(tree, policy=_Policy)
    except SyntaxError as err:  # compile() raises some too: `return` outside a function, ...
        return Compiled(None, error=f"{type(err).__name__}: {err.msg}", lineno=err.lineno, syntax=True)
    if result.errors:
        first = _ERROR_LINE.match(result.errors[0])  # "Line 3: ..." from RestrictedPython
        error = "; ".join([first.group(2) if first else result.errors[0], *result.errors[1:]])
        return Compiled(None, error=error, lineno=int(first.group(1)) if first else None)
    return Compiled(result.code, tuple(result.used_names))


def compile_expression(text: str) -> types.CodeType:
    """Compile an expression under the sandbox policy.

    Raises: SandboxViolation
    """
    return compile_code(text, "eval").unwrap()


def compile_script(text: str) -> types.CodeType:
    """Compile a script under the sandbox policy.

    Raises: SandboxViolation
    """
    return compile_code(text, "exec").unwrap()


__all__ = ["TICK", "Compiled", "SandboxViolation", "compile_code", "compile_expression", "compile_script"]
