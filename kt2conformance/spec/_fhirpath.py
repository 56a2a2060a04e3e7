"""FHIRPath invariants, evaluated with fhirpathpy, with its measured gaps mended.

fhirpathpy 2.2.4 (measured in tests/test_fhirpath.py):
- has no `hasValue()` (used by ele-1 and per-1) and no `htmlChecks()` (txt-1, txt-2; the
  validator's own, see spec/_xhtml.py);
- cannot order Quantities (rng-2 `low <= high` raises TypeError): same-unit Quantities are
  compared by value here, others give an empty result;
- compares dateTime element values wrongly: `2023-01-01T09:30:00Z >= 2023-01-01T10:00:00+01:00`
  gives false (time zones ignored), `…:00Z` vs `…:00.000Z` are unequal, and a date against a
  dateTime of the same day is not empty.

fhirpathpy lets a caller supply functions and operators through its `userInvocationTable`, which
takes precedence over its own; the mends go in there, so the library itself is not patched.
The ordering operators compare date/dateTime values by the FHIRPath rules: values with a time are
normalised to UTC; seconds and milliseconds are one precision; when one value has a precision the
other lacks and they agree on all common ones, the result is empty. Other operands are handed to
fhirpathpy's own operators unchanged.

An invariant holds when its result is `true`; an empty result counts as not met, as in the HL7
Java validator (FHIRPathEngine.convertToBoolean) that the HAPI-based Koppeltaal server uses.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from functools import cache, lru_cache, partial
from typing import Any

import fhirpathpy
from fhirpathpy.engine import nodes, util
from fhirpathpy.engine.invocations import equality
from fhirpathpy.models import models

from kt2conformance.spec import _xhtml as xhtml

R4_MODEL = models["r4"]

_DATE_RE = re.compile(
    r"@?(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})(?:T(?P<h>\d{2})(?::(?P<mi>\d{2})"
    r"(?::(?P<s>\d{2}(?:\.\d+)?))?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def _as_text(value: Any) -> str | None:
    if isinstance(value, nodes.FP_DateTime):
        return value.asStr
    if isinstance(value, str):
        return value
    return None


def _components(text: str) -> list[Decimal | int] | None:
    """The comparable components of a date/dateTime, most significant first; None if not one.
    Values with a time part are normalised to UTC (an absent offset is taken as UTC)."""
    m = _DATE_RE.fullmatch(text)
    if m is None:
        return None
    if m["h"] is None:
        return [int(g) for g in (m["y"], m["mo"], m["d"]) if g is not None]
    seconds = Decimal(m["s"]) if m["s"] is not None else None
    year = int(m["y"])
    # The Gregorian calendar repeats every 400 years: shift towards the middle of Python's range
    # so that an offset applied to 0001-01-01 or 9999-12-31 does not leave it (years 0 and
    # 10000 are values FHIRPath compares like any other).
    shift = 400 if year <= 5000 else -400
    try:
        local = dt.datetime(year + shift, int(m["mo"]), int(m["d"]), int(m["h"]), int(m["mi"] or 0))
    except ValueError:  # 2021-02-30T…: not a date at all (the format check reports it)
        return None
    tz = m["tz"]
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        local -= sign * dt.timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
    parts: list[Decimal | int] = [local.year - shift, local.month, local.day, local.hour]
    if m["mi"] is not None:
        parts.append(local.minute)
    if seconds is not None:
        parts.append(seconds)
    return parts


def compare_dates(left: str, right: str) -> int | None:
    """-1, 0 or 1 by FHIRPath date/dateTime ordering; None when the precisions make it empty."""
    a, b = _components(left), _components(right)
    if a is None or b is None:
        raise ValueError("not a date/dateTime")
    if (len(a) > 3) != (len(b) > 3):
        # A date against a dateTime: compare the date as written on both sides.
        a, b = _components(left[:10].lstrip("@")), _components(right[:10].lstrip("@"))
        assert a is not None and b is not None
        if len(a) == len(b) == 3 and a == b:
            return None  # same day, one side has a time the other lacks
    for x, y in zip(a, b, strict=False):  # compared up to the shorter precision
        if x != y:
            return -1 if x < y else 1
    return 0 if len(a) == len(b) else None


def _valueless(operand: list[Any]) -> bool:
    """A single primitive that has only its `_x` companion (an id and extensions, no value)."""
    if len(operand) != 1:
        return False
    data = util.get_data(operand[0])  # type: ignore[no-untyped-call]
    return isinstance(data, dict) and bool(data) and data.keys() <= {"id", "extension"}


def _ordering(test: Callable[[int], bool], fallback: Callable[..., Any]) -> dict[str, Any]:
    def fn(left: list[Any], right: list[Any]) -> Any:
        if not left or not right or _valueless(left) or _valueless(right):
            # a primitive with only extensions has no value to order: the HL7 engine fails on it
            # (an error, or no verdict where `or`/`implies` has already decided); empty does both
            return []
        a = _as_text(left[0]) if len(left) == 1 else None
        b = _as_text(util.get_data(right[0])) if len(right) == 1 else None  # type: ignore[no-untyped-call]
        if a is not None and b is not None and _components(a) and _components(b):
            result = compare_dates(a, b)
            return [] if result is None else [test(result)]
        if len(left) == 1 == len(right) and (q := _quantities(
                util.get_data(left[0]), util.get_data(right[0]))):  # type: ignore[no-untyped-call]
            x, y = q
            return [] if x is None or y is None else [test((x > y) - (x < y))]
        return fallback(None, left, [util.get_data(r) for r in right])  # type: ignore[no-untyped-call]

    return {"fn": fn, "arity": {2: ["Any", "Any"]}, "nullable": True}


def _quantities(left: Any, right: Any) -> tuple[Decimal | None, Decimal | None] | None:
    """Two Quantity elements (JSON objects with a numeric `value`) as comparable numbers, for the
    ordering operators fhirpathpy lacks on them (rng-2 `low <= high` on a Range). Quantities in
    different units are not converted: (None, None), an empty result, where the HL7 engine would
    convert by UCUM. None when the operands are not both Quantities."""
    if not (isinstance(left, dict) and isinstance(right, dict)):
        return None
    values = left.get("value"), right.get("value")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    unit = [(q.get("system"), q.get("code")) if q.get("code") is not None else (None, q.get("unit"))
            for q in (left, right)]
    if unit[0] != unit[1]:
        return None, None
    return Decimal(str(values[0])), Decimal(str(values[1]))


def _has_value(inputs: list[Any]) -> list[bool]:
    """True when the focus is a primitive with a value (fhirpathpy yields an extension-only
    primitive `_x` as a dict, and complex elements as dicts)."""
    return [len(inputs) >= 1 and any(not isinstance(i, (dict, list)) for i in inputs)]


_ROOT: ContextVar[dict[str, Any] | None] = ContextVar("fhirpath_root", default=None)


def _resolve(inputs: list[Any]) -> list[Any]:
    """resolve() as the HL7 validator has it without a resolver: a `#id` reference is the
    contained resource of %rootResource with that id; any other reference resolves to nothing
    (ctm-1's `member.resolve().iif(empty(), true, …)` then holds). fhirpathpy has no resolve()."""
    root = _ROOT.get()
    contained = root.get("contained") if isinstance(root, dict) else None
    found = []
    for item in inputs:
        ref = item.get("reference") if isinstance(item, dict) else item
        if isinstance(ref, str) and ref.startswith("#") and isinstance(contained, list):
            found += [nodes.ResourceNode.create_node(r, r.get("resourceType"))  # type: ignore[no-untyped-call]
                      for r in contained if isinstance(r, dict) and r.get("id") == ref[1:]]
    return found


USER_INVOCATIONS: dict[str, Any] = {
    "resolve": {"fn": _resolve, "arity": {0: []}},
    "hasValue": {"fn": _has_value, "arity": {0: []}},
    # txt-1 and txt-2 as the HL7 validator evaluates them (spec/_xhtml.py); R4 publishes both as
    # htmlChecks(), the validator reads txt-2 as htmlChecks2() (FHIRPathExpressionFixer)
    "htmlChecks": {"fn": lambda inputs: [len(inputs) == 1 and xhtml.names_ok(inputs[0])], "arity": {0: []}},
    "htmlChecks2": {"fn": lambda inputs: [len(inputs) == 1 and xhtml.has_content(inputs[0])], "arity": {0: []}},
    "<": _ordering(lambda r: r < 0, equality.lt),
    ">": _ordering(lambda r: r > 0, equality.gt),
    "<=": _ordering(lambda r: r <= 0, equality.lte),
    ">=": _ordering(lambda r: r >= 0, equality.gte),
}


_AS_CALL = re.compile(r"(?<![\w$])as\(")

# Published R4 invariants the HL7 Java validator rewrites before evaluating them
# (FHIRPathExpressionFixer): R4's ref-1 is empty, so not met, on a Reference without `reference`
# (identifier-only or type-only); R4B repaired it with `reference.exists() implies (...)`, and the
# validator also lets `#` (a reference to the container itself) pass.
_R4_REF_1 = ("reference.startsWith('#').not() or (reference.substring(1).trace('url') in "
             "%rootResource.contained.id.trace('ids'))")
PUBLISHED_FIXES: dict[str, str] = {_R4_REF_1: f"reference.exists() implies (reference = '#' or ({_R4_REF_1}))"}


@cache
def compile_expression(expression: str, typed: bool) -> Callable[..., list[Any]]:
    """A compiled FHIRPath expression with the mends above; `typed` selects the R4 model (for a
    resource root, where `as(canonical)` and friends need types).

    `as(T)` is compiled as `ofType(T)`: the two agree on a single item, and R4's dom-3 applies
    `as` to `descendants()`, a collection, where fhirpathpy raises while the HL7 engines filter
    (R5 rewrote dom-3 with ofType for this reason)."""
    expression = PUBLISHED_FIXES.get(expression, expression)
    return fhirpathpy.compile(_AS_CALL.sub("ofType(", expression), model=R4_MODEL if typed else None,
                              options={"userInvocationTable": USER_INVOCATIONS,
                                       "traceFn": lambda *args: None})


_KEYWORDS = {"and", "or", "xor", "implies", "not", "true", "false", "div", "mod", "in", "contains", "is", "as"}
_WHOLE_INPUT = re.compile(r"\b(descendants|children|repeat)\(|\$this|%context")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'")
_IDENT = re.compile(r"(?<![%\w`])`?([A-Za-z_]\w*)`?(?!\w|\s*\()")
_CALL = re.compile(r"(?<![.\w])([A-Za-z_]\w*)\s*\(")


@dataclass(frozen=True)
class _Plan:
    """What an invariant's result can depend on, read from its text once.

    `names`: the member names it mentions. When it calls no function on its input as a whole
    (`children()`, `descendants()`, `repeat()`, `$this`, or any function at the top level not
    applied to a member), its result depends only on those members of the focus (and, with
    `%resource`/`%rootResource`, of the resource), so equal projections give equal results.
    `head`: for a single path chain (`contained.where(…).empty()`), its first member: when the
    focus lacks it, every step sees an empty collection and the result is that of `{}`."""

    names: frozenset[str] | None
    uses_resource: bool
    head: str | None


def _top_level(expression: str) -> str:
    """The expression without string literals and parenthesised parts."""
    text, depth, out = _STRING.sub("''", expression), 0, []
    for ch in text:
        depth += ch == "("
        if depth == 0:
            out.append(ch)
        depth -= ch == ")"
    return "".join(out)


@cache
def _plan(expression: str) -> _Plan:
    text = _STRING.sub("''", expression)
    top = _top_level(expression)
    head_match = re.fullmatch(r"([A-Za-z_]\w*)(\.[A-Za-z_]\w*(\(\))?)*", top)
    head = head_match.group(1) if head_match and "." in top else None
    # resolve() sees the contained resources of %rootResource: no projection tells its result
    opaque = _WHOLE_INPUT.search(text) or "resolve(" in text or any(m.group(1) not in _KEYWORDS
                                                                    for m in _CALL.finditer(top))
    names = None if opaque else frozenset(n for n in _IDENT.findall(text) if n not in _KEYWORDS)
    return _Plan(names, "%resource" in text or "%rootResource" in text, head)


@lru_cache(maxsize=4096)
def _matches(key: str, names: frozenset[str]) -> bool:
    base = key[1:] if key.startswith("_") else key
    if base in names:
        return True
    # a choice element: `value` names valueString, valueReference…
    return any(base.startswith(n) and base[len(n):][:1].isupper() for n in names)


def _projection(value: Any, names: frozenset[str]) -> str:
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if _matches(k, names)}
    return json.dumps(value, sort_keys=True, default=str)


_ORDER_FORM = re.compile(
    r"(\w+)\.(?:exists|hasValue)\(\)\.not\(\) or (\w+)\.(?:exists|hasValue)\(\)\.not\(\) "
    r"or \(?(\w+) (<=|>=|<|>) (\w+)\)?")
_TESTS: dict[str, Callable[[int], bool]] = {"<": lambda r: r < 0, "<=": lambda r: r <= 0,
                                            ">": lambda r: r > 0, ">=": lambda r: r >= 0}


@cache
def _order_form(expression: str) -> tuple[str, str, str] | None:
    """(left, op, right) for `a.exists().not() or b.exists().not() or a OP b` over two members
    (inv-1, per-1): the commonest invariant shape, and the costliest in fhirpathpy."""
    m = _ORDER_FORM.fullmatch(expression)
    if m is None or {m[1], m[2]} != {m[3], m[5]}:
        return None
    return m[3], m[4], m[5]


def _order_fast(form: tuple[str, str, str], focus: Any) -> bool | None:
    """The order form evaluated directly when both members are plain date/dateTime strings (an
    `_x` companion beside a value changes nothing) or one is absent; None to leave it to
    fhirpathpy (a companion without a value, lists, other types)."""
    left, op, right = form
    if not isinstance(focus, dict):
        return None
    a, b = focus.get(left), focus.get(right)
    if (f"_{left}" in focus and not isinstance(a, str)) or (f"_{right}" in focus and not isinstance(b, str)):
        return None
    if a is None or b is None:
        return True
    if not (isinstance(a, str) and isinstance(b, str) and _components(a) and _components(b)):
        return None
    result = compare_dates(a, b)
    return False if result is None else _TESTS[op](result)


def _lacks(focus: Any, name: str) -> bool:
    """`focus` is an object without member `name`: no `name` and no `_name` (FHIRPath reads
    both), so every path starting there is empty."""
    return isinstance(focus, dict) and name not in focus and f"_{name}" not in focus


def _no_contained(focus: Any) -> bool | None:
    """dom-2, dom-4 and dom-5 on a resource without contained resources: each tests
    `contained…empty()`, true when there is nothing contained."""
    return True if _lacks(focus, "contained") else None


def _strings(value: Any) -> tuple[set[str], set[str]] | None:
    """Every string anywhere in a JSON value, and those of its `reference` members: what
    `descendants()` reaches (every member, `_x` companions too: a reference in a primitive's
    extension counts, as in the HL7 engine), found without recursion. None for an array inside
    an array, on which fhirpathpy's descendants() fails."""
    strings: set[str] = set()
    references: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("reference")
            if isinstance(ref, str):
                references.add(ref)
            stack.extend(item.values())
        elif isinstance(item, list):
            if any(isinstance(i, list) for i in item):
                return None
            stack.extend(item)
        elif isinstance(item, str):
            strings.add(item)
    return strings, references


def _dom_3(focus: Any) -> bool | None:
    """dom-3 on a resource whose contained resources all have a plain id: it holds when each is
    named by a `reference` (`#id`) somewhere in the resource, and fails when one of them is named
    by no string at all and no string anywhere is `#` (the expression's other ways to be
    referred to: a canonical, uri or url `#id`, or a reference to the container `#`). What lies
    between (an `#id` only in some other string) is left to fhirpathpy."""
    if not isinstance(focus, dict) or "_contained" in focus:
        return None
    if "contained" not in focus:
        return True
    contained = focus["contained"]
    if not isinstance(contained, list) or not contained or not isinstance(focus.get("resourceType"), str):
        return None
    ids = []
    for res in contained:
        if not isinstance(res, dict) or "_id" in res or not isinstance(res.get("resourceType"), str):
            return None
        rid = res.get("id")
        if not isinstance(rid, str) or not rid:
            return None
        ids.append(f"#{rid}")
    found = _strings(focus)
    if found is None:
        return None
    strings, references = found
    if all(i in references for i in ids):
        return True
    if "#" not in strings and any(i not in strings for i in ids):
        return False
    return None


def _dom_6(focus: Any) -> bool | None:
    """dom-6 (`text.div.exists()`) when text is absent or a plain object with or without div."""
    if not isinstance(focus, dict) or "_text" in focus:
        return None
    if "text" not in focus:
        return False
    text = focus["text"]
    if not isinstance(text, dict) or "_div" in text:
        return None
    div = text.get("div")
    if isinstance(div, str) and div:
        return True
    return False if "div" not in text else None


def _ref_1(focus: Any) -> bool | None:
    """ref-1 (as the HL7 validator mends it, see PUBLISHED_FIXES) on a Reference without a
    `reference`, or with one that is not a `#fragment`: both hold whatever is contained."""
    if not isinstance(focus, dict) or "_reference" in focus:
        return None
    if "reference" not in focus:
        return True
    ref = focus["reference"]
    return True if isinstance(ref, str) and ref and not ref.startswith("#") else None


_DOM_3 = ("contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | "
          "%resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference = '#')"
          ".exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#')"
          ".exists()).not()).trace('unmatched', id).empty()")
# Published R4 invariants by their exact text, answered directly for the common shapes of their
# focus (None: anything else, left to fhirpathpy); they never raise, so the oracle may ask them
# before holds(). An invariant whose text differs (a profile that changes it) is always evaluated
# by fhirpathpy. tests/test_fhirpath.py checks each answer against fhirpathpy's.
NATIVE: dict[str, Callable[[Any], bool | None]] = {
    "contained.contained.empty()": _no_contained,  # dom-2
    _DOM_3: _dom_3,
    "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()": _no_contained,  # dom-4
    "contained.meta.security.empty()": _no_contained,  # dom-5
    "text.`div`.exists()": _dom_6,
    _R4_REF_1: _ref_1,
}


@cache
def _native(expression: str) -> Callable[[Any], bool | None] | None:
    """The direct evaluation of an invariant, when it is a known one or has the order form."""
    found = NATIVE.get(expression)
    if found is None and (form := _order_form(expression)) is not None:
        return partial(_order_fast, form)
    return found


_MEMO: dict[tuple[Any, ...], bool] = {}
_MEMO_LIMIT = 100_000


def holds(expression: str, focus: Any, resource: dict[str, Any], root: dict[str, Any] | None = None) -> bool:
    """Whether an invariant holds on `focus` (an element or the resource itself). `resource` is
    %resource (a contained resource, for what is inside one), `root` %rootResource (the Task;
    by default `resource`).

    The published invariants in NATIVE and the order form are answered directly for their
    common shapes; other results are remembered by what the expression can see (see _Plan), so
    the thousands of Tasks of a run pay FHIRPath's price only for the values that differ."""
    root = resource if root is None else root
    native = _native(expression)
    if native is not None:
        answer = native(focus)
        if answer is not None:
            return answer
    plan = _plan(expression)
    typed = focus is resource
    try:
        key = _memo_key(expression, plan, typed, focus, resource, root)
    except ValueError:  # an integer too long for text: no memo for this one
        key = None
    if key is None:
        return _evaluate(expression, focus, resource, root, typed)
    if key[2] == "absent":
        focus = {"resourceType": focus["resourceType"]} if typed and "resourceType" in focus else {}
        resource = focus if typed else resource
    if key not in _MEMO:
        if len(_MEMO) >= _MEMO_LIMIT:
            _MEMO.clear()
        _MEMO[key] = _evaluate(expression, focus, resource, root, typed)
    return _MEMO[key]


def _memo_key(expression: str, plan: _Plan, typed: bool, focus: Any, resource: dict[str, Any],
              root: dict[str, Any]) -> tuple[Any, ...] | None:
    """What the result depends on, or None when that can't be told from the expression."""
    if plan.head is not None and isinstance(focus, dict) and not any(_matches(k, frozenset({plan.head})) for k in focus):
        return (expression, typed, "absent")
    if not isinstance(focus, (dict, list)) and not plan.uses_resource and "%context" not in expression:
        # a primitive focus (Narrative.div for txt-1): its value is all the expression can see
        return (expression, typed, json.dumps(focus))
    if plan.names is not None:
        if not plan.uses_resource:
            return (expression, typed, _projection(focus, plan.names), None)
        return (expression, typed, _projection(focus, plan.names), _projection(resource, plan.names),
                None if root is resource else _projection(root, plan.names))
    return None


def _evaluate(expression: str, focus: Any, resource: dict[str, Any], root: dict[str, Any], typed: bool) -> bool:
    fn = compile_expression(expression, typed)
    seen: dict[int, Any] = {}
    _ROOT.set(_merged(root, seen))
    return fn(_merged(focus, seen), {"resource": _merged(resource, seen), "rootResource": _merged(root, seen)}) == [True]


def _merged(value: Any, seen: dict[int, Any]) -> Any:
    """`value` with each primitive and its `_x` companion as one item, as FHIRPath sees them.

    fhirpathpy navigates `x` and `_x` as two items, so `lastModified` with extensions is a
    collection of two, and every singleton use (inv-1's `lastModified >= authoredOn`, a
    `startsWith`) fails, `count()` is off by one. Here the value of a primitive is its item (the
    companion of a present value moves to `__x`, out of `x`'s and children()'s way but still
    among descendants(), where dom-3 looks for references); a repeating one fills only the
    places without a value; a companion without a value (or with `""`, which the HL7 validator
    reads as none) stays the item: an element with no value, hasValue() false, and no order in
    a comparison, as in the Java engine. Copies only what changes; `seen` keeps one copy per
    object, so focus inside %resource stays the same object."""
    if not isinstance(value, (dict, list)):
        return value
    done = seen.get(id(value))
    if done is not None:
        return done
    if isinstance(value, list):
        items = [_merged(v, seen) for v in value]
        out: Any = value if all(a is b for a, b in zip(items, value, strict=True)) else items
    else:
        changed = False
        fields: dict[str, Any] = {}
        for k, v in value.items():
            if k.startswith("_") and k[1:] in value:
                plain, companion = value[k[1:]], _merged(v, seen)
                if isinstance(plain, list) and isinstance(companion, list):
                    fields[k[1:]] = [p if p not in (None, "") or i >= len(companion) else companion[i]
                                     for i, p in enumerate(plain)]
                elif plain == "":
                    fields[k[1:]] = companion  # the HL7 engine reads "" as no value
                # kept where descendants() still finds it (a reference in a primitive's extension
                # counts for dom-3, as in the HL7 engine) but `x` and children() do not
                fields[f"_{k}"] = companion
                changed = True
                continue
            m = _merged(v, seen)
            changed = changed or m is not v
            if k not in fields:
                fields[k] = m
        out = fields if changed else value
    seen[id(value)] = out
    return out
