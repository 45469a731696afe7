"""Render a task's instructions (a process owner's Jinja template) safely, as text with line breaks.

The template runs in Jinja's immutable sandbox with autoescape on, over the task's data. What it
produces is then shown as text: no HTML from the template or from the data reaches the page, only
line breaks and `**bold**` (added after escaping). A broken template shows its source as text.

Budget (Trust I hole 4): every item a `{% for %}` draws and every call counts as a step, and the
clock is checked at each step, so nested loops with no output stop after MAX_STEPS or MAX_SECONDS.
Operations that allocate or compute in one step (`*`, `**`, `%`, `+`, `~`, pads, `format`, `replace`, `join`,
`center`, `indent`, `batch`, `slice`, `int`, `round`, `translate`, `encode`, Decimals in fixed point) are
checked first by engine.limits; `lipsum` and `sum` of lists are not offered.
"""
from __future__ import annotations

import functools
import html
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from flask_babel import gettext as _
from jinja2 import nodes
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import pass_eval_context
from jinja2.visitor import NodeTransformer
from markupsafe import Markup, escape

from engine import content_limits, limits

MAX_CHARS = 20_000  # a template that loops is cut off here …
MAX_SECONDS = 0.5  # … or when it has taken this long
MAX_STEPS = 200_000  # loop items and calls
_local = threading.local()


class _Steps:
    __slots__ = ("deadline", "left")

    def __init__(self) -> None:
        self.left = MAX_STEPS
        self.deadline = time.monotonic() + MAX_SECONDS

    def tick(self) -> None:
        self.left -= 1
        if self.left < 0 or time.monotonic() > self.deadline:
            raise limits.BudgetExceeded("instructions template ran out of its budget")


def _tick() -> None:
    steps: _Steps | None = getattr(_local, "steps", None)
    if steps is not None:
        steps.tick()


def _meter(items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
        _tick()
        yield item


@pass_eval_context
def _concat(eval_ctx: Any, parts: list[Any]) -> str:
    limits.check_size(sum(len(p) if isinstance(p, str) else 64 for p in parts), "~ concatenation")
    joined: str = markup_join(parts) if eval_ctx.autoescape else str_join(parts)
    return joined


class _Metered(NodeTransformer):
    """Draw every loop's items through the meter and every `~` through the size check."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "jz_meter", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(nodes.List(node.nodes, lineno=node.lineno), "jz_concat", [], [], None, None,
                            lineno=node.lineno)


def _checked(filter_: Callable[..., Any], check: Callable[..., None]) -> Callable[..., Any]:
    skip = 1 if getattr(filter_, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(filter_)
    def run(*args: Any, **kwargs: Any) -> Any:
        _tick()
        check(*args[skip:], **kwargs)
        return filter_(*args, **kwargs)
    return run


def _width(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> None:
    width = kwargs.get("width", width)
    limits.check_width(width, "center width")


def _indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
    width = kwargs.get("width", width)
    size = width if isinstance(width, int) else len(str(width))
    text = str(value)
    limits.check_size(len(text) + (text.count("\n") + 1) * size, "indent")


def _count(value: Any, count: Any = 0, *args: Any, **kwargs: Any) -> None:
    limits.check_width(count, "count")
    limits.check_width(kwargs.get("linecount", kwargs.get("slices")), "count")


def _format(value: Any, *args: Any, **kwargs: Any) -> None:
    limits.check_mod(str(value), kwargs or args)


def _replace(value: Any, old: Any = "", new: Any = "", count: Any = None) -> None:
    limits.check_replace(str(value), str(old), str(new), count)


def _int(value: Any, default: Any = 0, base: Any = 10) -> None:
    limits.check_int(value, base)


def _round(value: Any, precision: Any = 0, method: Any = "common") -> None:
    limits.check_width(abs(precision) if isinstance(precision, int) else precision, "round precision")
    if method != "common":  # math.ceil/floor make an int of every digit
        limits.check_integral(value, "round()")


def _sum(value: Any, attribute: Any = None, start: Any = 0) -> None:
    if isinstance(start, (list, tuple)):  # sum() copies the growing list at every item: quadratic, in C
        raise limits.BudgetExceeded("说明模板不支持列表求和 (sum() of lists is not offered in instructions)")


def _join(value: Any, d: Any = "", attribute: Any = None) -> None:
    if isinstance(value, (list, tuple)):
        limits.check_size(len(value) * len(str(d)) + sum(len(v) if isinstance(v, str) else 64 for v in value), "join")


class _Environment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with a step budget and size checks."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    _BINOPS: Mapping[str, Callable[[Any, Any], Any]] = {"*": limits.mul, "**": limits.power, "%": limits.mod,
                                                        "+": limits.add}

    def __init__(self) -> None:
        super().__init__(autoescape=True)
        self.filters["jz_meter"] = _meter
        self.filters["jz_concat"] = _concat
        for name, check in (("center", _width), ("indent", _indent), ("batch", _count), ("slice", _count),
                            ("format", _format), ("replace", _replace), ("join", _join), ("int", _int),
                            ("round", _round), ("sum", _sum)):
            self.filters[name] = _checked(self.filters[name], check)
        del self.globals["lipsum"]  # lipsum(100000) writes 44 million characters in one call

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        metered: nodes.Template = _Metered().visit(tree)
        return metered

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        return self._BINOPS[operator](left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        owner, name = getattr(__obj, "__self__", None), getattr(__obj, "__name__", "")
        if owner is not None and isinstance(name, str) and name:
            __obj = limits.guarded_method(owner, name) or __obj
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Wrap ``str.format``/``format_map`` like Jinja does, checking the field widths first."""
        sandboxed = super().wrap_str_format(value)
        if sandboxed is None:
            return None
        fmt, is_map = str(value.__self__), value.__name__ == "format_map"
        get_field = SandboxedFormatter(self).get_field  # resolves `{0.real:f}` as the format will

        def checked(*args: Any, **kwargs: Any) -> str:
            mapping = args[0] if is_map and args and isinstance(args[0], Mapping) else kwargs
            limits.check_format_string(fmt, () if is_map else args, dict(mapping), get_field)
            result: str = sandboxed(*args, **kwargs)
            return result
        return checked


_env = _Environment()


def render_text(template: str | None, data: Mapping[str, Any]) -> str:
    """Return the instructions as plain text (the template's own markup included as text)."""
    if not template:
        return ""
    _local.steps = _Steps()
    try:
        compiled = _env.from_string(template)
        pieces: list[str] = []
        size = 0
        for piece in compiled.generate(**{k: v for k, v in data.items() if isinstance(k, str)}):
            pieces.append(piece)
            size += len(piece)
            if size > MAX_CHARS:
                pieces.append(" …")
                break
        rendered = "".join(pieces)
    except Exception:  # a broken, refused or over-budget template must not break the page
        return template
    finally:
        _local.steps = None
    # Autoescape protected the data inside the template; undo it once so all of it is shown as text.
    return html.unescape(rendered)


def _bold(line: Markup) -> Markup:
    parts = line.split("**")
    pairs = (len(parts) - 1) // 2  # an unmatched ** stays as it is
    out = [parts[0]]
    for i, part in enumerate(parts[1:], start=1):
        out.append(Markup("<strong>{}</strong>").format(part) if i % 2 and i <= 2 * pairs - 1
                   else part if i % 2 == 0 else Markup("**") + part)
    return Markup("").join(out)


def to_html(text: str) -> Markup:
    """Escape text, then keep its line breaks and `**bold**`."""
    return Markup("<br>\n").join(_bold(line) for line in escape(text).splitlines())


def render(template: str | None, data: Mapping[str, Any]) -> Markup:
    """Return the task's instructions as safe HTML.

    A template past content_limits.MAX_INSTRUCTIONS (deploy refuses it; a version deployed before may hold one) is
    neither compiled nor shown: compiling is outside the step budget, and 560 KB of it took 6.5 s on each view.
    """
    if template and len(template) > content_limits.MAX_INSTRUCTIONS:
        return Markup.escape(_("说明过长（%(n)s 字，最多 %(max)s 字），未显示：请流程管理员缩短后部署新版本。",
                               n=f"{len(template):,}", max=f"{content_limits.MAX_INSTRUCTIONS:,}"))
    return to_html(render_text(template, data))


__all__ = ["render", "render_text", "to_html"]
