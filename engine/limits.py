"""Size guards for untrusted code: refuse an operation that would allocate too much before it runs.

A process owner's script, expression or instructions template runs one C-level step at a time that
no time budget can interrupt: ``'x'.ljust(4*10**8)``, ``'%0*d' % (4*10**8, 1)``, ``f'{1:>999999999}'``,
``s += s`` thirty times, ``pow(7, 1 << 20000, (1 << 20000) - 1)``, ``int(Decimal('1e600000'))``,
``s.encode('punycode')`` (a pure-Python codec, quadratic). Each guard here predicts the size or cost of
the result from its operands (cheaply, without building it) and raises BudgetExceeded past the limits
below. Shared by the script sandbox (engine.spiff.sandbox) and the instructions renderer
(web.tasks.instructions).
"""
from __future__ import annotations

import codecs
import operator
import re
import string
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

MAX_ITEMS: Final = 1_000_000  # characters of a str, items of a list, bytes of bytes
MAX_WIDTH: Final = 10_000  # a format width or precision
MAX_INT_BITS: Final = 100_000
MAX_INT_DIGITS: Final = MAX_INT_BITS * 30_103 // 100_000  # decimal digits of a MAX_INT_BITS integer (log10 2)
MAX_POW_MOD_BITS: Final = 4_096  # pow(a, b, m) takes bits(b) × bits(m)² steps in one C call
# Codecs implemented in C, linear in their input (punycode, idna, the *_escape ones are Python or quadratic).
TEXT_CODECS: Final = frozenset(codecs.lookup(name).name for name in
                               ("utf-8", "utf-16", "utf-32", "ascii", "latin-1", "gbk", "gb18030"))
_CODEC_ERRORS: Final = frozenset({"strict", "ignore", "replace"})  # the others grow a character up to 30 times

_SEQUENCES: Final = (str, bytes, list, tuple)
_DIGITS: Final = re.compile(r"\d+")
_CONVERSION: Final = re.compile(r"%(?:\([^)]*\))?[-#0 +_^]*(?:\*|\d*)(?:\.(?:\*|\d*))?")
_INT_CONVERSION: Final = re.compile(_CONVERSION.pattern + "[diu]")  # '%d' % Decimal(...) converts it to an int
_SPEC_TAIL: Final = re.compile(r"(?:\.(\d+))?([a-zA-Z%]?)$")  # precision and type of a format spec


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
    """Raise to a power, refusing integers too big to compute quickly (``pow(a, b, mod)`` included)."""
    if mod is not None:
        bits = max(x.bit_length() for x in (a, b, mod) if isinstance(x, int)) if isinstance(mod, int) else 0
        if bits > MAX_POW_MOD_BITS:
            raise BudgetExceeded(f"三参数 pow() 的操作数过大 (pow(a, b, mod) with a {bits}-bit operand: "
                                 f"limit {MAX_POW_MOD_BITS} bits)")
        return pow(a, b, mod)
    if (isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1
            and a.bit_length() * b > MAX_INT_BITS):
        raise BudgetExceeded(f"乘方结果过大 (a {a.bit_length()}-bit integer to a {b.bit_length()}-bit power is too large)")
    return pow(a, b)


def check_integral(value: Any, what: str) -> None:
    """Refuse turning a Decimal of more than MAX_INT_DIGITS integer digits into an int (one quadratic C step)."""
    if isinstance(value, Decimal) and value.is_finite() and value.adjusted() >= MAX_INT_DIGITS:
        raise BudgetExceeded(f"数值过大，无法转为整数 ({what} of a Decimal with {value.adjusted() + 1} digits: "
                             f"limit {MAX_INT_DIGITS})")


def check_int(value: Any, base: Any = 10) -> None:
    """Refuse ``int(value[, base])`` past MAX_INT_BITS before it is built.

    Decimal digits are checked by check_integral; a string in base 16 (or 2, 8, 32, 0) has no length limit
    of its own in Python, unlike base 10 (4,300 digits).
    """
    check_integral(value, "int()")
    if (isinstance(value, (str, bytes, bytearray)) and isinstance(base, int) and 0 <= base <= 36
            and len(value) * ((base or 16) - 1).bit_length() > MAX_INT_BITS):
        raise BudgetExceeded(f"数字过长，无法转为整数 (int() of {len(value)} digits in base {base}: "
                             f"limit {MAX_INT_BITS} bits)")


def to_int(*args: Any, **kwargs: Any) -> int:
    """Call ``int(...)`` after check_int."""
    check_int(args[0] if args else None, args[1] if len(args) > 1 else kwargs.get("base", 10))
    return int(*args, **kwargs)


def to_round(number: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``round(...)``, refusing ``round(Decimal('1e600000'))`` and ``round(5, -10**8)`` (which computes 10**10**8)."""
    ndigits = args[0] if args else kwargs.get("ndigits")
    if ndigits is None:
        check_integral(number, "round()")
    elif isinstance(number, int) and isinstance(ndigits, int) and -ndigits > MAX_INT_DIGITS:
        raise BudgetExceeded(f"round() 的位数过大 (round() to {ndigits} digits: limit -{MAX_INT_DIGITS})")
    return round(number, *args, **kwargs)


class _BuiltinType(type):
    """Metaclass of the checked int and str: isinstance(x, int) still holds for every int."""

    base: type

    def __instancecheck__(cls, ob: Any) -> bool:
        return isinstance(ob, cls.base)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, cls.base)


class CheckedInt(int, metaclass=_BuiltinType):
    """``int`` for untrusted code: int(Decimal('1e600000')) or int('f' * 10**6, 16) is refused before it is built."""

    base = int

    def __new__(cls, *args: Any, **kwargs: Any) -> int:  # type: ignore[misc]
        return to_int(*args, **kwargs)


class CheckedStr(str, metaclass=_BuiltinType):
    """``str`` for untrusted code: str(b, 'punycode') is refused like b.decode('punycode')."""

    base = str

    def __new__(cls, *args: Any, **kwargs: Any) -> str:  # type: ignore[misc]
        if len(args) > 1 or "encoding" in kwargs or "errors" in kwargs:
            check_codec(args[1] if len(args) > 1 else kwargs.get("encoding", "utf-8"),
                        args[2] if len(args) > 2 else kwargs.get("errors", "strict"))
        return str(*args, **kwargs)


def checked_sum(iterable: Iterable[Any], /, start: Any = 0) -> Any:
    """Call ``sum(...)``; lists and tuples are joined in linear time and size-checked.

    ``sum([[0]] * 100000, [])`` copies the growing result at every item: 5×10⁹ copies in one C call.
    """
    if not isinstance(start, (list, tuple)):
        return sum(iterable, start)
    items = list(iterable)
    for item in items:
        if not isinstance(item, type(start)):
            raise TypeError(f'can only concatenate {type(start).__name__} (not "{type(item).__name__}") '
                            f"to {type(start).__name__}")
    check_size(len(start) + sum(len(item) for item in items), "sum() 列表求和 (sum() of lists)")
    joined = list(start)
    for item in items:
        joined.extend(item)
    return joined if isinstance(start, list) else tuple(joined)


def lshift(a: Any, b: Any) -> Any:
    """Shift left, refusing integers too big to compute quickly."""
    if isinstance(a, int) and isinstance(b, int) and a and a.bit_length() + b > MAX_INT_BITS:
        raise BudgetExceeded(f"左移结果过大 (a {a.bit_length()}-bit integer shifted by a {b.bit_length()}-bit count "
                             "is too large)")
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
        if _INT_CONVERSION.search(text):
            for arg in b.values() if isinstance(b, Mapping) else args:
                check_integral(arg, "'%d' formatting")
        check_size(len(a) + sum(_len(arg) for arg in args), "formatting")


def mod(a: Any, b: Any, op: Callable[[Any, Any], Any] = operator.mod) -> Any:
    """Apply ``%``, refusing printf-style formats whose width or precision is too large."""
    check_mod(a, b)
    return op(a, b)


def check_number_format(value: Any, spec: Any) -> None:
    """Refuse a Decimal in fixed point (``f``, ``F``, ``%``) longer than MAX_ITEMS: ``f"{Decimal('1e30000000'):f}"``.

    Other types stay short: a float has at most 309 integer digits, an int's digits are capped by Python.
    """
    if not isinstance(value, Decimal) or not value.is_finite() or not isinstance(spec, str):
        return
    tail = _SPEC_TAIL.search(spec)
    kind = tail.group(2) if tail else "f"
    if kind not in ("f", "F", "%"):
        return
    exponent = int(value.as_tuple().exponent) + (2 if kind == "%" else 0)
    whole = max(value.adjusted() + 1 + (2 if kind == "%" else 0), 1)
    fraction = int(tail.group(1)) if tail and tail.group(1) else max(-exponent, 0)
    check_size(whole + fraction, f"Decimal 以 '{kind}' 格式化 (formatting a Decimal with '{kind}')")


def check_format_string(fmt: str, args: Iterable[Any], kwargs: dict[str, Any],
                        get_field: Callable[[str, Any, Any], tuple[Any, Any]] | None = None) -> None:
    """Refuse ``fmt.format(...)`` whose field specs (nested ``{:>{w}}`` ones included) are too wide.

    With ``get_field`` (the sandboxed formatter's), a Decimal field in fixed point is checked too.
    """
    args = tuple(args)
    nested, auto = False, 0
    for _literal, field, spec, conversion in string.Formatter().parse(fmt):
        if spec:
            check_spec(re.sub(r"\{[^}]*\}", "", spec))
            nested = nested or "{" in spec
        if field is not None and field[:1] in ("", ".", "["):  # auto-numbered, like Formatter.vformat
            field, auto = f"{auto}{field}", auto + 1
        auto += sum(1 for name in re.findall(r"\{([^}!:]*)", spec or "") if name[:1] in ("", ".", "["))
        if get_field is not None and field is not None and spec and conversion is None:
            try:
                value = get_field(field, args, kwargs)[0]
            except Exception:  # noqa: S112  # nosec B112 # format() itself raises the same error
                continue
            check_number_format(value, re.sub(r"\{[^}]*\}", str(MAX_WIDTH), spec))
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


def _translate(ob: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    table = args[0] if args else kwargs.get("table")
    values = table.values() if isinstance(table, Mapping) else table if isinstance(table, (list, tuple)) else ()
    if isinstance(ob, str):  # a str maps each character to a str of any length (bytes map byte to byte)
        longest = max((len(v) for v in values if isinstance(v, str)), default=1)
        check_size(len(ob) * longest, "translate() 替换 (translate())")


def check_codec(encoding: Any, errors: Any = "strict") -> str:
    """Return the codec's name; refuse a codec outside TEXT_CODECS or an error handler that grows the text.

    Raises: BudgetExceeded
    """
    try:
        codec = codecs.lookup(encoding).name if isinstance(encoding, str) else None
    except LookupError:
        codec = None
    if codec not in TEXT_CODECS:
        raise BudgetExceeded(f"不支持编码 {encoding!r} (the {encoding!r} codec is not offered; use one of "
                             f"{', '.join(sorted(TEXT_CODECS))})")
    if errors not in _CODEC_ERRORS:
        raise BudgetExceeded(f"不支持错误处理方式 {errors!r} (errors={errors!r} is not offered; use one of "
                             f"{', '.join(sorted(_CODEC_ERRORS))})")
    return codec


def _codec(ob: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    codec = check_codec(args[0] if args else kwargs.get("encoding", "utf-8"),
                        args[1] if len(args) > 1 else kwargs.get("errors", "strict"))
    if name == "encode" and isinstance(ob, str):  # decoding never makes more characters than bytes
        narrow = codec in ("ascii", "iso8859-1") or (ob.isascii() and codec not in ("utf-16", "utf-32"))
        check_size(len(ob) * (1 if narrow else 4) + 4, "encode() 编码 (encode())")


def _hex(ob: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if isinstance(ob, bytes):
        check_size(len(ob) * (3 if args or kwargs else 2), "hex()")


def _to_bytes(ob: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    length = args[0] if args else kwargs.get("length", 1)
    if isinstance(length, int):
        check_size(length, "to_bytes()")


def _from_bytes(ob: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    data: Any = args[0] if args else kwargs.get("bytes")
    if hasattr(data, "__len__") and len(data) * 8 > MAX_INT_BITS:
        raise BudgetExceeded(f"字节过多，无法转为整数 (from_bytes() of {len(data)} bytes: limit {MAX_INT_BITS} bits)")


def _ratio(ob: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if isinstance(ob, Decimal) and ob.is_finite():  # Decimal('1e-600000') has a 10**600000 denominator
        _sign, digits, exponent = ob.as_tuple()
        if len(digits) + abs(int(exponent)) > MAX_INT_DIGITS:
            raise BudgetExceeded(f"数值过大，无法转为分数 (as_integer_ratio() of a Decimal with exponent {exponent}: "
                                 f"limit {MAX_INT_DIGITS} digits)")


_METHOD_CHECKS: Final[dict[str, Callable[[Any, str, tuple[Any, ...], dict[str, Any]], None]]] = {
    "ljust": _pad, "rjust": _pad, "center": _pad, "zfill": _pad, "replace": _replace,
    "expandtabs": _expandtabs, "strftime": _spec, "__format__": _spec, "extend": _extend,
    "translate": _translate, "encode": _codec, "decode": _codec, "hex": _hex, "to_bytes": _to_bytes,
    "from_bytes": _from_bytes, "as_integer_ratio": _ratio,
}
_GUARDED_TYPES: Final = (str, bytes, list, int, Decimal)
_BOUND_TO_ANY: Final = frozenset({"strftime", "__format__", "from_bytes"})  # from_bytes is a classmethod


def guarded_method(ob: Any, name: str) -> Callable[..., Any] | None:
    """Return a size-checking stand-in for an allocating method of a str, bytes, list, int or Decimal, or None.

    ``ob`` may be the instance (``s.ljust``) or its type (``str.ljust``: the first argument is then the
    instance). ``join`` checks the joined size.
    """
    if name == "join" and isinstance(ob, (str, bytes)):
        return lambda items: join(ob, items)
    check = _METHOD_CHECKS.get(name)
    method = getattr(ob, name, None) if check is not None else None
    if check is None or method is None:
        return None
    if isinstance(ob, type) and issubclass(ob, _GUARDED_TYPES) and name not in _BOUND_TO_ANY:

        def checked_unbound(self: Any, *args: Any, **kwargs: Any) -> Any:
            check(self, name, args, kwargs)
            return method(self, *args, **kwargs)
        return checked_unbound
    if isinstance(ob, _GUARDED_TYPES) or name in _BOUND_TO_ANY:

        def checked(*args: Any, **kwargs: Any) -> Any:
            check(ob, name, args, kwargs)
            return method(*args, **kwargs)
        return checked
    return None


def format_value(value: Any, spec: Any) -> str:
    """Format like an f-string field ``{value:spec}``, refusing huge widths, precisions and Decimals."""
    check_spec(spec)
    check_number_format(value, spec)
    return format(value, spec)


__all__ = ["MAX_INT_BITS", "MAX_INT_DIGITS", "MAX_ITEMS", "MAX_POW_MOD_BITS", "MAX_WIDTH", "TEXT_CODECS",
           "BudgetExceeded", "CheckedInt", "CheckedStr", "add", "check_codec", "check_format_string", "check_int",
           "check_integral", "check_mod", "check_number_format", "check_replace", "check_size", "check_spec",
           "check_width", "checked_sum", "format_value", "guarded_method", "join", "lshift", "mod", "mul",
           "power", "to_int", "to_round"]
