"""Guards for the C steps that walk nested values: comparison, hashing, sorting and turning into text.

``a = [a, a]`` forty times builds 41 lists that hold 2⁴⁰ values once expanded; ``a == b`` (b built the
same way), ``hash()`` of such a tuple, ``sorted``, ``repr`` or a dict lookup then walk every expanded value
in one C step that no budget tick interrupts. The sandbox (engine.spiff.sandbox, engine.spiff.policy) routes
those steps through the guards here, which count the values the step may visit — a container held twice is
counted twice, each container is walked once — and raise BudgetExceeded past limits.MAX_ITEMS before the
step runs. Scalars and flat containers take a fast path (a type test, or one scan in C).
"""
from __future__ import annotations

import functools
import itertools
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from RestrictedPython.PrintCollector import PrintCollector

from engine import limits
from engine.limits import BudgetExceeded

_VIEWS: Final[tuple[type, ...]] = (type({}.keys()), type({}.values()), type({}.items()))
_VIEW_TYPES: Final = frozenset(_VIEWS)
NESTED: Final = frozenset({list, tuple, dict, set, frozenset, slice, *_VIEWS})
_HASHED: Final = frozenset({dict, set, frozenset, _VIEWS[0], _VIEWS[2]})  # `in` hashes the needle
_KEYS: Final = frozenset({tuple, frozenset})  # hashable and nested: hashing walks them
_TEXT: Final = frozenset({str, bytes})
_OVER: Final = limits.MAX_ITEMS + 1


def _children(node: Any) -> Iterable[Any]:
    if isinstance(node, dict):
        return [*node, *node.values()]
    if isinstance(node, _VIEWS):
        mapping: Any = node.mapping  # type: ignore[attr-defined]  # every dict view has one
        return [*mapping, *mapping.values()]
    if isinstance(node, slice):
        return (node.start, node.stop, node.step)
    return node  # type: ignore[no-any-return]


def expanded(value: Any, memo: dict[int, int] | None = None, *, text: bool = False) -> int:
    """Count the values a C walk of value visits, capped at MAX_ITEMS + 1 (a container inside itself: over).

    ``memo`` (by id, valid while value is alive and unchanged) may be shared by calls on related values.
    A str or bytes counts one value per 64 characters it compares, or with ``text`` each character repr writes.
    """
    if type(value) not in NESTED:
        return _leaf(value, text)
    flat = _flat(_children(value), text)
    if flat:
        return flat
    memo = {} if memo is None else memo
    path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            path.discard(key)
            total = 1
            for child in _children(node):
                total += memo[id(child)] if type(child) in NESTED else _leaf(child, text)
            memo[key] = min(total, _OVER)
            continue
        if key in memo:
            continue
        if key in path:
            return _OVER  # held inside itself: a comparison would recurse until RecursionError, each level anew
        items = _children(node)
        flat = _flat(items, text)
        if flat:
            memo[key] = flat
            continue
        path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in items if type(child) in NESTED and id(child) not in memo)
    return memo.get(id(value), _OVER)


def _flat(items: Any, text: bool) -> int:
    """Count a container holding no containers, scanning in C; 0 when it holds some."""
    if not NESTED.isdisjoint(map(type, items)):
        return 0
    chars = sum(map(len, itertools.compress(items, map(_TEXT.__contains__, map(type, items)))))
    return min(1 + len(items) + (chars if text else chars >> 6), _OVER)


def _leaf(value: Any, text: bool) -> int:
    if type(value) not in _TEXT:
        return 1
    return 1 + (len(value) if text else len(value) >> 6)


def _refuse(what: str, size: int) -> BudgetExceeded:
    shown = f"more than {limits.MAX_ITEMS}" if size >= _OVER else str(size)
    return BudgetExceeded(f"{what}: 嵌套的值过多 (would visit {shown} nested values, limit {limits.MAX_ITEMS}; "
                          "a list held many times inside another counts each time)")


def check(value: Any, what: str, *, text: bool = False) -> Any:
    """Return value, refusing one whose walk (for ``what``) visits more than MAX_ITEMS values."""
    if type(value) in NESTED:
        size = expanded(value, text=text)
        if size > limits.MAX_ITEMS:
            raise _refuse(what, size)
    return value


def key(value: Any) -> Any:
    """Return value, refusing a dict key or set member whose hash walks more than MAX_ITEMS values."""
    return check(value, "hash()") if type(value) in _KEYS else value


def shown(value: Any) -> Any:
    """Return value, refusing one whose text (str, repr, an f-string, print) would pass MAX_ITEMS characters."""
    return check(value, "转为文本 (str/repr)", text=True)


def materialized(value: Any) -> Any:
    """Return value, or a list of its items when it is an iterator, so the guards can look at every item."""
    return list(value) if type(value) not in NESTED and hasattr(type(value), "__next__") else value


def check_pair(a: Any, b: Any, what: str = "比较 (comparison)") -> None:
    """Refuse comparing a with b when both hold more than MAX_ITEMS values (the walk stops with the smaller)."""
    if type(a) in NESTED and type(b) in NESTED:
        memo: dict[int, int] = {}
        if expanded(a, memo) > limits.MAX_ITEMS and expanded(b, memo) > limits.MAX_ITEMS:
            raise _refuse(what, _OVER)


def check_contains(item: Any, container: Any, what: str = "in") -> Any:
    """Refuse ``item in container`` when it would compare more than MAX_ITEMS values; return the container.

    An iterator comes back as a list of its items (``in`` would have consumed it anyway).
    """
    if type(item) not in NESTED:
        return container  # a scalar compares with each item in one step (a str: in linear time)
    memo: dict[int, int] = {}
    size = expanded(item, memo)
    if size > limits.MAX_ITEMS:
        raise _refuse(what, size)
    if type(container) in _HASHED or isinstance(container, (str, bytes, range)):
        return container  # one hash of item, then at most one comparison per colliding key
    items = materialized(container)
    if isinstance(items, (list, tuple)) and size * len(items) <= limits.MAX_ITEMS:
        return items
    total = 0
    for each in _children(items):
        total += min(size, expanded(each, memo)) if type(each) in NESTED else 1
        if total > limits.MAX_ITEMS:
            raise _refuse(what, total)
    return items


def _ordering(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def compare(a: Any, b: Any) -> Any:
        if type(a) in NESTED and type(b) in NESTED:
            check_pair(a, b)
        return op(a, b)
    return compare


def contains(a: Any, b: Any) -> bool:
    """``a in b`` once the guards allow it."""
    return a in (check_contains(a, b) if type(a) in NESTED else b)


def not_contains(a: Any, b: Any) -> bool:
    """``a not in b`` once the guards allow it."""
    return a not in (check_contains(a, b) if type(a) in NESTED else b)


COMPARISONS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "==": _ordering(operator.eq), "!=": _ordering(operator.ne), "<": _ordering(operator.lt),
    "<=": _ordering(operator.le), ">": _ordering(operator.gt), ">=": _ordering(operator.ge), "in": contains,
    "not in": not_contains,
}


def checked_hash(value: Any) -> int:
    """``hash()`` for untrusted code."""
    return hash(check(value, "hash()"))


def _ordered(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    """Wrap sorted/min/max: the values compared (the items, or their keys) may hold MAX_ITEMS values in all."""

    @functools.wraps(func)
    def guarded(*args: Any, key: Callable[[Any], Any] | None = None, **kwargs: Any) -> Any:
        items = list(args[0]) if len(args) == 1 else list(args)
        keys = items if key is None else [key(item) for item in items]
        check(keys, f"{name}()")
        if key is None:
            return func(items, **kwargs)
        if name == "sorted":
            return [items[i] for i in func(range(len(items)), key=keys.__getitem__, **kwargs)]
        if not items:
            return func(items, **kwargs)  # the default, or ValueError like the builtin
        return items[func(range(len(items)), key=keys.__getitem__)]
    return guarded


checked_sorted: Final = _ordered(sorted, "sorted")
checked_min: Final = _ordered(min, "min")
checked_max: Final = _ordered(max, "max")


def _sort(ob: list[Any]) -> Callable[..., None]:
    def sort(*, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> None:
        ob[:] = checked_sorted(ob, key=key, reverse=reverse)
    return sort


def _searching(ob: Any, method: Callable[..., Any]) -> Callable[..., Any]:
    def search(item: Any, *args: Any) -> Any:
        check_contains(item, ob, "查找 (count/index/remove)")
        return method(item, *args)
    return search


def _hashing(method: Callable[..., Any], name: str) -> Callable[..., Any]:
    def hashing(*args: Any, **kwargs: Any) -> Any:
        args = tuple(check(materialized(a), f"{name}()") for a in args)
        for value in kwargs.values():
            check(value, f"{name}()")
        return method(*args, **kwargs)
    return hashing


_SEARCHING: Final = frozenset({"count", "index", "remove"})
_HASHING: Final = frozenset({"get", "pop", "setdefault", "fromkeys", "update", "add", "discard", "union",
                             "intersection", "intersection_update", "difference", "difference_update",
                             "symmetric_difference", "symmetric_difference_update", "issubset", "issuperset",
                             "isdisjoint"})


def guarded_method(ob: Any, name: str, method: Any) -> Any:
    """Return method, or a guarded stand-in when it compares or hashes its arguments (``xs.index(x)``, ``d.get(k)``)."""
    if not (type(ob) in NESTED or (isinstance(ob, type) and ob in NESTED)) or not callable(method):
        return method
    if name == "sort" and type(ob) is list:
        return _sort(ob)
    if name == "sort" and ob is list:
        return lambda self, **kwargs: _sort(self)(**kwargs)
    if name in _SEARCHING and type(ob) in (list, tuple):
        return _searching(ob, method)
    if name in _SEARCHING or name in _HASHING or name == "sort":
        return _hashing(method, name)
    return method


def binary(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Wrap ``-``, ``&``, ``|``, ``^``: a dict view hashes every item of the other operand."""

    def apply(a: Any, b: Any) -> Any:
        if type(a) in _VIEW_TYPES or type(b) in _VIEW_TYPES:
            a, b = check(materialized(a), "集合运算"), check(materialized(b), "集合运算")
        return op(a, b)
    return apply


# -- stand-ins the sandbox offers -------------------------------------------------------------

class Str(limits.CheckedStr):
    """``str`` for untrusted code: also refuses the text of a value holding too many nested values."""

    def __new__(cls, *args: Any, **kwargs: Any) -> str:  # type: ignore[misc]
        if args:
            shown(args[0])
        return limits.CheckedStr.__new__(cls, *args, **kwargs)


class Printed(PrintCollector):
    """``print`` for untrusted code: refuses printing a value holding too many nested values."""

    def _call_print(self, *objects: Any, **kwargs: Any) -> None:
        for value in objects:
            shown(value)
        super()._call_print(*objects, **kwargs)  # type: ignore[no-untyped-call]


def _repr(value: Any) -> str:
    return repr(shown(value))


class _Builtin(type):
    """Metaclass of the stand-ins for dict, set and frozenset: isinstance(x, dict) still holds for every dict."""

    base: type

    def __instancecheck__(cls, ob: Any) -> bool:
        return isinstance(ob, cls.base)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, cls.base)


def _hashed(base: type) -> type:
    """Make the stand-in for base: its items (keys) are hashed, so they are checked first."""

    def new(cls: type, *args: Any, **kwargs: Any) -> Any:
        return base(*(check(materialized(a), f"{base.__name__}()") for a in args), **kwargs)
    return _Builtin(base.__name__, (base,), {"base": base, "__new__": new, "__doc__": f"``{base.__name__}`` "
                                             "for untrusted code: refuses keys whose hash walks too many values."})


Dict: Final = _hashed(dict)
Set: Final = _hashed(set)
FrozenSet: Final = _hashed(frozenset)


def _getitem(ob: Any, index: Any) -> Any:
    return ob[index] if type(index) not in _KEYS else ob[key(index)]


def _members(values: Any) -> Any:
    return check(materialized(values), "hash()")


_HIDDEN: Final = "<值过大，未显示 (value too large to show)>"


def quiet(err: BaseException) -> None:
    """Replace the arguments of err and the errors it chains to that str() could not write in bounded time."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(type(a) in NESTED and expanded(a, text=True) > limits.MAX_ITEMS for a in current.args):
            current.args = tuple(_HIDDEN if type(a) in NESTED and expanded(a, text=True) > limits.MAX_ITEMS else a
                                 for a in current.args)
        current = current.__cause__ or current.__context__


def mod(a: Any, b: Any, op: Callable[[Any, Any], Any] = operator.mod) -> Any:
    """Apply ``%``; a format's values are turned into text, so each is checked like str()."""
    if not isinstance(a, (str, bytes)):
        return op(a, b)  # arithmetic: limits.mod checks formats only
    for value in b.values() if isinstance(b, dict) else b if isinstance(b, tuple) else (b,):
        shown(value)
    return limits.mod(a, b, op)


BUILTINS: Final[Mapping[str, object]] = {
    "str": Str, "repr": _repr, "hash": checked_hash, "min": checked_min, "max": checked_max, "sorted": checked_sorted,
    "dict": Dict, "set": Set, "frozenset": FrozenSet,
}
_COMPARE_NAMES: Final = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "in": "in",
                          "not_in": "not in"}
GUARDS: Final[Mapping[str, object]] = {  # the names engine.spiff.policy's rewrites call
    **{f"_jz_{name}_": COMPARISONS[op] for name, op in _COMPARE_NAMES.items()},
    "_jz_flat_": functools.partial(check, what="比较 (comparison)"), "_jz_key_": key,
    "_jz_getitem_": _getitem, "_jz_members_": _members, "_jz_shown_": shown, "_jz_mod_": mod,
    "_jz_sub_": binary(operator.sub), "_jz_and_": binary(operator.and_), "_jz_or_": binary(operator.or_),
    "_jz_xor_": binary(operator.xor),
}



STORED_INT_BITS: Final = 14_000  # ≈4,214 digits: Python writes at most 4,300 of an int (sys.get_int_max_str_digits)
LONG_INT: Final = "整数超过 4,300 位，无法保存或显示 (an integer of more than 4,300 digits cannot be stored or shown)"
LONE_SURROGATE: Final = ("含不成对的代理字符（如 chr(0xd800)），无法显示 (a lone surrogate, as chr(0xd800): UTF-8 cannot "
                         "hold it, and every page showing it failed)")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def unstorable(value: Any) -> str | None:
    """Say what value holds that no save or page could write, a key included, or None: an int past STORED_INT_BITS
    (scripts compute with ints up to limits.MAX_INT_BITS, but json and str() refuse one past 4,300 digits: ValueError
    in the save, a 500, no incident) or a lone surrogate (a 500 on each page showing it). Each container is walked
    once, however often it is shared."""
    stack: list[Any] = [value]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                return LONE_SURROGATE
        elif isinstance(item, int):
            if item.bit_length() > STORED_INT_BITS:
                return LONG_INT
        elif isinstance(item, (list, tuple, set, frozenset, dict)) and id(item) not in seen:
            seen.add(id(item))
            stack.extend((*item.keys(), *item.values()) if isinstance(item, dict) else item)
    return None

__all__ = ["BUILTINS", "COMPARISONS", "GUARDS", "NESTED", "Dict", "FrozenSet", "Printed", "Set", "Str", "binary",
           "check", "check_contains", "check_pair", "checked_hash", "checked_max", "checked_min", "checked_sorted",
           "contains", "expanded", "guarded_method", "key", "materialized", "mod", "not_contains", "quiet", "shown",
           "unstorable"]
