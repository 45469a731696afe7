"""Run BPMN scripts and expressions (conditions, DMN cells, timers, pre/post scripts) in a sandbox.

Uploading BPMN is running code (docs/architecture.md): everything SpiffWorkflow evaluates goes through
RestrictedPython with our guards, globals built fresh per call, and a budget.

Compile-time refusals (SandboxViolation) are engine.spiff.policy's. Refused at run time: builtins not
offered (NameError), ``str.format``/``format_map`` (safer_getattr: the '{0.__class__}' escape),
writes into anything but dicts and lists.

Budget (BudgetExceeded): a unit of fuel per loop iteration, function or lambda call and item drawn
by ``for`` or a comprehension; a monotonic deadline checked at each tick. Size guards (engine.limits)
refuse, before they allocate: ``range()`` longer than MAX_ITEMS, ``int ** int``, ``int * int`` and ``<<``
results above MAX_INT_BITS, str/bytes/list/tuple repetition and concatenation (``+``, ``+=``, ``*``,
``extend``) and joins above MAX_ITEMS, pads (``ljust``/``rjust``/``center``/``zfill``), ``replace``,
``expandtabs``, ``translate``, ``encode``, ``hex``, ``to_bytes``, ``sum()`` of lists, format widths and
precisions (``%`` formatting, f-string specs, ``strftime``) above MAX_WIDTH, Decimals formatted in fixed
point; conversions to int past MAX_INT_BITS (``int()``, ``round()``, ``from_bytes``, ``'%d'``);
``pow(a, b, mod)`` with operands past MAX_POW_MOD_BITS; codecs other than engine.limits.TEXT_CODECS.
Data written back that the serializer would expand past MAX_ITEMS values (a list held twice is written
twice) is refused too, and so is an int past 4,300 digits or a lone surrogate in it or in an expression's value
(nesting.unstorable): no save or page writes them. A service's parameters are held to the limits of data from
outside (content_limits).

Steps that walk nested values (comparisons, ``in``, ``hash()``, dict keys and set members, ``sorted``,
``min``/``max``, ``count``/``index``, ``str``/``repr``/f-strings/``print``/``%s``, an error's message) are
refused past MAX_ITEMS values counted with sharing expanded (engine.spiff.nesting): ``a = [a, a]`` forty
times would otherwise make ``a == b`` walk 2⁴⁰ values in one C step.

Not covered, because one C-level step is never interrupted: many allocations each under the caps. The
per-process memory ceiling (JZFLOW_MEMORY_LIMIT_MB, engine.memory) turns those into a MemoryError, which
the runtime records as an incident.
"""

from __future__ import annotations

import functools
import json
import operator
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from RestrictedPython import Guards
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine import (
    BasePythonScriptEngineEnvironment,
    PythonScriptEngine,
)
from SpiffWorkflow.exceptions import SpiffWorkflowException

from engine import content_limits, limits
from engine.limits import BudgetExceeded as BudgetExceeded  # re-exported: raised by the sandbox
from engine.spiff import nesting
from engine.spiff.policy import TICK, SandboxViolation, compile_code, compile_expression, compile_script

_MAX_DEPTH: Final = 100  # nesting of written-back data; also ends self-referencing lists
_CONVERSIONS: Final = {-1: None, ord("s"): str, ord("r"): repr, ord("a"): ascii}
_GONE: Final = object()  # marks a variable the script deleted


# -- budget -------------------------------------------------------------------------------------

_PRECHARGED: Final = frozenset({tuple, str, bytes, range, dict, set, frozenset,
                                type({}.keys()), type({}.values()), type({}.items())})
_local = threading.local()


class _Budget:
    """Fuel and a deadline shared by the scripts one thread runs inside one budget() block."""

    __slots__ = ("deadline", "fuel", "tripped")

    def __init__(self, seconds: float, fuel: int) -> None:
        self.fuel = fuel
        self.deadline = time.monotonic() + seconds
        self.tripped = False

    def spend(self, units: int = 1) -> None:
        """Take fuel; raise once fuel or time has run out, and on every later call."""
        self.fuel -= units
        if self.fuel < 0 or time.monotonic() > self.deadline:
            self.tripped = True
            raise BudgetExceeded("script ran out of fuel (too many steps)" if self.fuel < 0
                                 else "script ran past its time limit")

    def getiter(self, ob: Any) -> Iterator[Any]:
        """Iterate ob for a script, paying one unit of fuel per item."""
        self.spend(1)
        if type(ob) in _PRECHARGED:  # cannot grow while iterated: pay up front, iterate in C
            self.spend(len(ob))
            return iter(ob)
        return self._metered(iter(ob))  # lists may grow under a comprehension: pay as we go

    def _metered(self, items: Iterator[Any]) -> Iterator[Any]:
        for count, item in enumerate(items, 1):
            if not count & 63:
                self.spend(64)
            yield item


# -- guards and helpers -------------------------------------------------------------------------

def _format(value: Any, conversion: int, spec: str) -> str:
    """Format an f-string field that has a spec, refusing huge widths and precisions."""
    convert = _CONVERSIONS.get(conversion)
    nesting.shown(value)
    return limits.format_value(convert(value) if convert is not None else value, spec)


_safer_getattr: Final = functools.partial(Guards.safer_getattr, default=Guards.raise_)


def _getattr(ob: Any, name: str, *default: Any) -> Any:
    """Get an attribute like RestrictedPython's safer_getattr; allocating str/list methods come size-checked."""
    ob = _UNWRAPPED.get(ob, ob) if isinstance(ob, type) else ob  # str.ljust, int.from_bytes: the real type's
    value = _safer_getattr(ob, name, *default)
    guarded = limits.guarded_method(ob, name)
    return nesting.guarded_method(ob, name, value) if guarded is None else guarded


_UNWRAPPED: Final[Mapping[object, type]] = {limits.CheckedInt: int, limits.CheckedStr: str, nesting.Str: str,
                                             nesting.Dict: dict, nesting.Set: set, nesting.FrozenSet: frozenset}


def _range(*args: int) -> range:
    """Make a range, refusing long ones: list(range(...)) would fill memory in C, unmetered."""
    r = range(*args)
    if len(r) > limits.MAX_ITEMS:
        raise BudgetExceeded(f"range of {len(r)} items (limit {limits.MAX_ITEMS})")
    return r


def _write(ob: Any) -> Any:
    """Allow item assignment into dicts and lists only."""
    if isinstance(ob, (dict, list)):
        return ob
    raise TypeError(f"scripts cannot modify a {type(ob).__name__}")


_INPLACE: Final[Mapping[str, Callable[[Any, Any], Any]]] = {
    "+=": functools.partial(limits.add, op=operator.iadd), "-=": nesting.binary(operator.isub),
    "*=": functools.partial(limits.mul, op=operator.imul), "/=": operator.itruediv, "//=": operator.ifloordiv,
    "%=": functools.partial(nesting.mod, op=operator.imod), "**=": limits.power, "<<=": limits.lshift,
    ">>=": operator.irshift, "&=": nesting.binary(operator.iand), "|=": nesting.binary(operator.ior),
    "^=": nesting.binary(operator.ixor), "@=": operator.imatmul,
}


def _inplacevar(op: str, x: Any, y: Any) -> Any:
    """Apply an augmented assignment operator."""
    return _INPLACE[op](x, y)


def _augitem(ob: Any, key: Any, op: str, value: Any) -> None:
    """Apply `ob[key] op= value` through the write guard."""
    key = nesting.key(key)  # hashed by the read below
    _write(ob)[key] = _inplacevar(op, ob[key], value)


def _apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call func for the `f(*args, **kwargs)` syntax."""
    return func(*args, **kwargs)


SAFE_GLOBALS: Final[Mapping[str, object]] = types.MappingProxyType(
    {"Decimal": Decimal, "date": date, "datetime": datetime, "timedelta": timedelta})
# These exceptions escape `except Exception` in SpiffWorkflow and would take the worker down.
_UNSAFE_BUILTINS: Final = {"setattr", "delattr", "BaseException", "SystemExit", "KeyboardInterrupt",
                           "GeneratorExit"}
_BUILTINS: Final[dict[str, object]] = {
    **{k: v for k, v in Guards.safe_builtins.items() if k[0] != "_" and k not in _UNSAFE_BUILTINS},
    "range": _range, "pow": limits.power, "int": limits.CheckedInt, "round": limits.to_round,
    "sum": limits.checked_sum, "any": any, "all": all, "enumerate": enumerate, "zip": zip, "reversed": reversed,
    "list": list, "tuple": tuple, **nesting.BUILTINS,
}
_BASE_GLOBALS: Final[dict[str, object]] = {
    **SAFE_GLOBALS, "__builtins__": _BUILTINS,
    "_getattr_": _getattr,
    "_getitem_": operator.getitem, "_write_": _write, "_inplacevar_": _inplacevar, "_apply_": _apply,
    "_print_": nesting.Printed,
    "_iter_unpack_sequence_": Guards.guarded_iter_unpack_sequence,
    "_unpack_sequence_": Guards.guarded_unpack_sequence,
    "_jz_pow_": limits.power, "_jz_mul_": limits.mul, "_jz_lshift_": limits.lshift, "_jz_add_": limits.add,
    "_jz_format_": _format, "_jz_augitem_": _augitem, **nesting.GUARDS,
}
_PLAIN_SCALARS: Final = (str, int, float, bool, type(None), Decimal, date)  # datetime is a date


class _NotPlain(Exception):
    """A value the serializer cannot store (or a self-containing list)."""


def _expanded_size(value: object, sizes: dict[int, int], path: set[int], depth: int = 0) -> int:
    """Count the values value holds as the serializer writes them out: a list held twice is written twice.

    ``sizes`` remembers containers already counted, so ``a = [a, a]`` 22 times is counted in 22 steps, not
    4 million (the serializer would expand it exponentially, in one step no budget interrupts).

    Raises: _NotPlain, BudgetExceeded (more than MAX_ITEMS values)
    """
    if isinstance(value, _PLAIN_SCALARS):
        return 1
    if depth >= _MAX_DEPTH or id(value) in path or not isinstance(value, (dict, list, tuple, set, frozenset)):
        raise _NotPlain
    known = sizes.get(id(value))
    if known is not None:
        return known
    if isinstance(value, dict) and not all(isinstance(k, _PLAIN_SCALARS) for k in value):
        raise _NotPlain
    path.add(id(value))
    size = 1 + sum(_expanded_size(v, sizes, path, depth + 1)
                   for v in (value.values() if isinstance(value, dict) else value))
    path.discard(id(value))
    limits.check_size(size, "脚本写回的数据 (data the script writes back)")
    sizes[id(value)] = size
    return size


# -- SpiffWorkflow glue -------------------------------------------------------------------------

class SandboxEnvironment(BasePythonScriptEngineEnvironment):  # type: ignore[misc]
    """Evaluate expressions and execute scripts over task data inside the sandbox."""

    def __init__(self, services: Mapping[str, Callable[..., Any]] | None = None, *,
                 time_limit: float = 2.0, fuel: int = 1_000_000) -> None:
        super().__init__(dict(SAFE_GLOBALS))
        self.services: Mapping[str, Callable[..., Any]] = dict(services or {})
        self.time_limit = time_limit
        self.fuel = fuel

    @contextmanager
    def budget(self, *, seconds: float | None = None, fuel: int | None = None) -> Iterator[None]:
        """Share one budget among everything this thread runs inside the block."""
        outer: _Budget | None = getattr(_local, "budget", None)
        if outer is not None and seconds is None and fuel is None:
            yield  # nested without limits of its own: keep spending the outer budget
            return
        inner = _Budget(self.time_limit if seconds is None else seconds,
                        self.fuel if fuel is None else fuel)
        if outer is not None:  # a nested block may tighten the outer budget, never extend it
            inner.deadline = min(inner.deadline, outer.deadline)
            inner.fuel = min(inner.fuel, outer.fuel)
        start, _local.budget = inner.fuel, inner
        try:
            yield
        finally:
            _local.budget = outer
            if outer is not None:
                outer.fuel -= start - inner.fuel

    def evaluate(self, expression: str, context: Mapping[str, Any],
                 external_context: Mapping[str, Any] | None = None) -> Any:
        """Return the value of expression with task data, then external_context, as variables.

        Raises: SandboxViolation, BudgetExceeded, ValueError (data shadows a helper)
        """
        compiled = compile_code(expression, "eval")
        code = compiled.unwrap()
        scope = self._scope(compiled.names, context, external_context or {})[1]
        value = eval(code, scope)  # noqa: S307  # nosec B307 # RestrictedPython code, guarded globals; an expression has no `try`: it cannot swallow BudgetExceeded
        problem = nesting.unstorable(value)  # a DMN output, a message payload, a subject: stored or shown outside
        if problem is not None:
            raise ValueError(f"表达式的结果：{problem}")
        return value

    def execute(self, script: str, context: dict[str, Any],
                external_context: Mapping[str, Any] | None = None) -> bool:
        """Run script, then write its top-level variables back into context (all or nothing).

        Raises: SandboxViolation, BudgetExceeded, ValueError (shadowed names), TypeError (not data)
        """
        compiled = compile_code(script, "exec")
        code = compiled.unwrap()
        external = external_context or {}
        clash = [n for n in compiled.names if n in context and n in external]
        if clash:
            raise ValueError(f"task data {clash} overwrites names given to the script; rename them")
        budget, scope = self._scope(compiled.names, context, external)
        try:
            exec(code, scope)  # noqa: S102  # nosec B102 # RestrictedPython code, our guarded globals
        except Exception as err:
            nesting.quiet(err)  # `raise ValueError(a)`: the incident's message is str(err)
            raise
        if budget.tripped:  # the script caught BudgetExceeded and carried on, or the block's budget is spent
            raise BudgetExceeded("script ran out of its budget")
        updates: dict[str, Any] = {}
        sizes: dict[int, int] = {}
        total = 0
        for name in compiled.names:
            if name.startswith("_") or name in SAFE_GLOBALS or name in external:
                continue
            value = scope.get(name, _GONE)
            if value is _GONE or callable(value) or isinstance(value, types.ModuleType):
                updates[name] = _GONE  # deleted, or a function: dropped, as TaskDataEnvironment does
                continue
            try:
                total += _expanded_size(value, sizes, set())
            except _NotPlain:
                raise TypeError(f"script variable '{name}' holds a {type(value).__name__}, which cannot "
                                "be stored in task data; use str, int, float, bool, None, Decimal, date, "
                                "datetime, list, dict, tuple or set") from None
            limits.check_size(total, "脚本写回的数据 (data the script writes back)")
            problem = nesting.unstorable(value)
            if problem is not None:
                raise ValueError(f"脚本变量 '{name}'：{problem} (script variable '{name}')")
            updates[name] = value
        for name, value in updates.items():
            if value is _GONE:
                context.pop(name, None)
            else:
                context[name] = value
        return True

    def _scope(self, names: tuple[str, ...], context: Mapping[str, Any],
               external: Mapping[str, Any]) -> tuple[_Budget, dict[str, Any]]:
        """Build fresh globals: guards and builtins always ours, data only for the names used."""
        budget: _Budget = getattr(_local, "budget", None) or _Budget(self.time_limit, self.fuel)
        scope = dict(_BASE_GLOBALS)
        scope[TICK] = budget.spend  # a bound method: the cheapest call per tick
        scope["_getiter_"] = budget.getiter
        for name in names:  # no name starts with "_" but "_" itself, which data may not set
            source = context if name in context else external if name in external else None
            if source is None or name == "_":
                continue
            if name in SAFE_GLOBALS:
                raise ValueError(f"variable '{name}' shadows the script helper {name}(); rename it")
            scope[name] = source[name]
        return budget, scope

    def call_service(self, context: dict[str, Any], operation_name: str = "",
                     operation_params: Mapping[str, Mapping[str, Any]] | None = None,
                     **kwargs: Any) -> str:
        """Call a registered service with the evaluated parameter values; return its JSON result."""
        if not self.services:
            raise NotImplementedError("service tasks are not enabled")
        service = self.services.get(operation_name)
        if service is None:
            raise LookupError(f"unknown service '{operation_name}'")
        params = {name: param["value"] for name, param in (operation_params or {}).items()}
        problem = content_limits.data_problem(params)
        if problem is not None:  # a script's Decimal('1e999999999') is cheap; the service's int() of it is not
            field, message = problem
            raise ValueError(f"服务“{operation_name}”的参数 {field} 超出限制：{message} "
                             f"(service '{operation_name}', parameter {field})")
        return json.dumps(service(**params))


class SandboxScriptEngine(PythonScriptEngine):  # type: ignore[misc]
    """SpiffWorkflow script engine whose every expression and script runs in the sandbox."""

    environment: SandboxEnvironment

    def __init__(self, *, time_limit: float = 2.0, fuel: int = 1_000_000,
                 services: Mapping[str, Callable[..., Any]] | None = None) -> None:
        super().__init__(SandboxEnvironment(services, time_limit=time_limit, fuel=fuel))

    def validate(self, expression: str) -> None:
        """Check an expression; DMNEngine.needs_eq relies on SyntaxError for partial cells.

        Raises: SyntaxError, SandboxViolation
        """
        compiled = compile_code(expression, "eval")
        if compiled.syntax:
            err = SyntaxError(compiled.error)
            err.lineno = compiled.lineno
            raise err
        compiled.unwrap()

    @contextmanager
    def budget(self, *, seconds: float | None = None, fuel: int | None = None) -> Iterator[None]:
        """Share one budget among everything this thread runs inside the block."""
        with self.environment.budget(seconds=seconds, fuel=fuel):
            yield

    def call_service(self, task: Any, **kwargs: Any) -> Any:
        """Call a service; SpiffWorkflow 3.2.0 raises NameError (`script`) on this error path.

        Raises: WorkflowTaskException
        """
        try:
            return self.environment.call_service(task.data, **kwargs)
        except SpiffWorkflowException:
            raise
        except Exception as err:
            name = kwargs.get("operation_name", "")
            raise WorkflowTaskException(f"service '{name}' failed: {type(err).__name__}: {err}",
                                        task=task, exception=err) from err

    def create_task_exec_exception(self, task: Any, script: str, err: Exception) -> Exception:
        """Wrap a script error; SpiffWorkflow 3.2.0 fails with TypeError on args like KeyError(5)."""
        if isinstance(err, SpiffWorkflowException):
            return super().create_task_exec_exception(task, script, err)  # type: ignore[no-any-return]
        line_number, error_line = self.get_error_line_number_and_content(script, err)
        detail = type(err).__name__ + (f": {err.args[0]}" if err.args else "")
        wrapped: Exception = WorkflowTaskException(detail, task=task, exception=err,
                                                   line_number=line_number, error_line=error_line)
        return wrapped

    def get_error_line_number_and_content(self, script: str, err: Exception) -> tuple[int, str]:
        """Locate the failing line, using the line a SandboxViolation carries."""
        if isinstance(err, SandboxViolation) and err.lineno:
            lines = script.splitlines()
            return err.lineno, lines[err.lineno - 1] if err.lineno <= len(lines) else ""
        return super().get_error_line_number_and_content(script, err)  # type: ignore[no-any-return]


def make_script_engine(*, time_limit: float = 2.0, fuel: int = 1_000_000) -> SandboxScriptEngine:
    """Build the sandboxed script engine to attach to every workflow (it is not serialized)."""
    return SandboxScriptEngine(time_limit=time_limit, fuel=fuel)


__all__ = ["SAFE_GLOBALS", "BudgetExceeded", "SandboxEnvironment", "SandboxScriptEngine", "SandboxViolation",
           "compile_expression", "compile_script", "make_script_engine"]
