"""Size guards for untrusted code: refuse an operation that would allocate too much before it runs.

A process owner's script, expression or instructions template runs one C-level step at a time that
no time budget can interrupt: ``'x'.ljust(4*10**8)``, ``'%0*d' % (4*10**8, 1)``, ``f'{1:>999999999}'``,
``s += s`` thirty times. Each guard here predicts the size of the result from its operands (cheaply,
without building it) and raises BudgetExceeded past the limits below. Shared by the script sandbox
(engine.spiff.sandbox) and the instructions renderer (web.tasks.instructions).
"""
from __future__ import annotations

import operator
import re
import string
from collections.abc import Callable, Iterable
from typing import Any, Final

MAX_ITEMS: Final = 1_000_000  # characters of a str, items of a list, bytes of bytes
MAX_WIDTH: Final = 10_000  # a format width or precision
MAX_INT_BITS: Final = 100_000

_SEQUENCES: Final = (str, bytes, list, tuple)
_DIGITS: Final = re.compile(r"\d+")
_CONVERSION: Final = re.compile(r"%(?:\([^)]*\))?[-#0 +_^]*(?:\*|\d*)(?:\.(?:\*|\d*))?")


class BudgetExceeded(Exception):
    """A script or template ran out of its time, fuel or size budget."""


def check_size(size: int, what: str) -> None:
    """Refuse a result of more than MAX_ITEMS items.

    Raises: BudgetExceeded
    """
    if size > MAX_ITEMS:
        raise BudgetExceeded(f"{what} would make {size} items (limit {MAX_ITEMS})")


def check_width(value: Any, what: str) -> None:
    """Refuse a width or precision beyond MAX_WIDTH (a pad or format that would allocate it)."""
    if isinstance(value, int) and value > MAX_WIDTH:
        raise BudgetExceeded(f"{what} {value} is too large (limit {MAX_WIDTH})")


def check_spec(spec: Any, what: str = "format width") -> None:
    """Refuse a format spec (``>999999999``, ``%0400000000d``, ``%10000000Y``) with a number past MAX_WIDTH."""
    if isinstance(spec, (str, bytes)):
        text = spec.decode("latin-1") if isinstance(spec, bytes) else spec
        if "%" in text:  # printf or strftime style: only the numbers inside conversions count
            text = " ".join(_CONVERSION.findall(text))
        for digits in _DIGITS.findall(text):
            if len(digits) > 6 or int(digits) > MAX_WIDTH:
                raise BudgetExceeded(f"{what} {digits[:20]} is too large (limit {MAX_WIDTH})")


def _len(ob: Any) -> int:
    return len(ob) if isinstance(ob, _SEQUENCES) else 0


def mul(a: Any, b: Any, op: Callable[[Any, Any], Any] = operator.mul) -> Any:
    """Multiply, refusing sequence repetition past MAX_ITEMS and integers past MAX_INT_BITS."""
    if isinstance(a, _SEQUENCES) and isinstance(b, int):
        check_size(len(a) * b, "repetition")
    elif isinstance(b, _SEQUENCES) and isinstance(a, int):
        check_size(len(b) * a, "repetition")
    elif isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_INT_BITS:
        raise BudgetExceeded("integer product is too large")
    return op(a, b)


def add(a: Any, b: Any, op: Callable[[Any, Any], Any] = operator.add) -> Any:
    """Add, refusing concatenations past MAX_ITEMS (``s = s + s`` doubling in a loop)."""
    if isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES):
        check_size(len(a) + len(b), "concatenation")
    return op(a, b)


def power(a: Any, b: Any, mod: Any = None) -> Any:
    """Raise to a power, refusing integers too big to compute quickly."""
    if (mod is None and isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1
            and a.bit_length() * b > MAX_INT_BITS):
        raise BudgetExceeded(f"{a} ** {b} is too large")
    return pow(a, b) if mod is None else pow(a, b, mod)


def lshift(a: Any, b: Any) -> Any:
    """Shift left, refusing integers too big to compute quickly."""
    if isinstance(a, int) and isinstance(b, int) and a and a.bit_length() + b > MAX_INT_BITS:
        raise BudgetExceeded(f"{a} << {b} is too large")
    return a << b


def check_mod(a: Any, b: Any) -> None:
    """Refuse ``a % b`` when a is a printf-style format whose width or precision (``*`` included) is too large."""
    if isinstance(a, (str, bytes)):
        text = a.decode("latin-1") if isinstance(a, bytes) else a
        check_spec(text)
        args = b if isinstance(b, tuple) else (b,)
        if any("*" in m for m in _CONVERSION.findall(text)):
            for arg in args:
                check_width(arg, "format width")
        check_size(len(a) + sum(_len(arg) for arg in args), "formatting")


def mod(a: Any, b: Any, op: Callable[[Any, Any], Any] = operator.mod) -> Any:
    """Apply ``%``, refusing printf-style formats whose width or precision is too large."""
    check_mod(a, b)
    return op(a, b)


def check_format_string(fmt: str, args: Iterable[Any], kwargs: dict[str, Any]) -> None:
    """Refuse ``fmt.format(...)`` whose field specs (nested ``{:>{w}}`` ones included) are too wide."""
    nested = False
    for _literal, _field, spec, _conversion in string.Formatter().parse(fmt):
        if spec:
            check_spec(re.sub(r"\{[^}]*\}", "", spec))
            nested = nested or "{" in spec
    if nested:
        for value in [*args, *kwargs.values()]:
            check_width(value, "format width")
    check_size(len(fmt) + sum(_len(v) for v in [*args, *kwargs.values()]), "formatting")


def join(sep: Any, items: Iterable[Any]) -> Any:
    """Join, refusing a result past MAX_ITEMS."""
    values = list(items)
    check_size(len(values) * len(sep) + sum(_len(v) for v in values), "join")
    return sep.join(values)


def _pad(ob: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    width = args[0] if args else kwargs.get("width")
    check_width(width, f"{name}() width")


def check_replace(ob: Any, old: Any, new: Any, limit: Any = None) -> None:
    """Refuse ``ob.replace(old, new[, limit])`` whose result would pass MAX_ITEMS."""
    if isinstance(ob, (str, bytes)) and isinstance(old, type(ob)) and isinstance(new, type(ob)):
        text: Any = ob
        count = text.count(old) if old else len(ob) + 1
        if isinstance(limit, int) and limit >= 0:
            count = min(count, limit)
        check_size(len(ob) + count * max(0, len(new) - len(old)), "replace()")


def _replace(ob: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if len(args) >= 2:
        check_replace(ob, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count"))


def _expandtabs(ob: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    size = args[0] if args else kwargs.get("tabsize", 8)
    if isinstance(size, int) and size > 0:
        tab = "\t" if isinstance(ob, str) else b"\t"
        check_size(len(ob) + ob.count(tab) * size, "expandtabs()")


def _spec(ob: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if args:
        check_spec(args[0])


def _extend(ob: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if args and hasattr(args[0], "__len__"):
        check_size(len(ob) + len(args[0]), "extend()")


_METHOD_CHECKS: Final[dict[str, Callable[[Any, str, tuple[Any, ...], dict[str, Any]], None]]] = {
    "ljust": _pad, "rjust": _pad, "center": _pad, "zfill": _pad, "replace": _replace,
    "expandtabs": _expandtabs, "strftime": _spec, "__format__": _spec, "extend": _extend,
}


def guarded_method(ob: Any, name: str) -> Callable[..., Any] | None:
    """Return a size-checking stand-in for an allocating method of a str, bytes or list, or None.

    ``ob`` may be the instance (``s.ljust``) or its type (``str.ljust``: the first argument is then the
    instance). ``join`` checks the joined size.
    """
    if name == "join" and isinstance(ob, (str, bytes)):
        return lambda items: join(ob, items)
    check = _METHOD_CHECKS.get(name)
    if check is None:
        return None
    if isinstance(ob, type) and ob in (str, bytes, list) and hasattr(ob, name):
        unbound = getattr(ob, name)

        def checked_unbound(self: Any, *args: Any, **kwargs: Any) -> Any:
            check(self, name, args, kwargs)
            return unbound(self, *args, **kwargs)
        return checked_unbound
    if isinstance(ob, (str, bytes, list)) or (name in ("strftime", "__format__") and hasattr(ob, name)):
        bound = getattr(ob, name, None)
        if bound is None:
            return None

        def checked(*args: Any, **kwargs: Any) -> Any:
            check(ob, name, args, kwargs)
            return bound(*args, **kwargs)
        return checked
    return None


def format_value(value: Any, spec: Any) -> str:
    """Format like an f-string field ``{value:spec}``, refusing huge widths and precisions."""
    check_spec(spec)
    return format(value, spec)


__all__ = ["MAX_INT_BITS", "MAX_ITEMS", "MAX_WIDTH", "BudgetExceeded", "add", "check_format_string", "check_mod",
           "check_replace", "check_size", "check_spec", "check_width", "format_value", "guarded_method", "join",
           "lshift", "mod", "mul", "power"]
