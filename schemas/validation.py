"""One sentence for a pydantic ``ValidationError``: what dead letters, refused
firmware lines and refused configuration all say about bad input; and validators
that apply the models' rules without building the models."""

from collections.abc import Callable, Collection, Mapping
from typing import Any, Final, TypeVar, cast

from pydantic import ValidationError
from pydantic_core import CoreSchema, core_schema


def describe(error: ValidationError, *, skip: int = 0) -> str:
    """The first problem, located: ``data.actuations: Input should be ≥ 1 (and 2 more)``.

    ``skip`` drops leading location parts the caller names itself (a union's tag).
    Input values are never quoted: they may be large, hostile or secret.
    """
    first = error.errors(include_url=False, include_input=False)[0]
    if first["type"] == "union_tag_invalid":
        tag = (first.get("ctx") or {}).get("tag")
        return f"type: unknown event type {tag!r}"
    location = ".".join(str(part) for part in first["loc"][skip:]) or "document"
    more = error.error_count() - 1
    suffix = f" (and {more} more)" if more else ""
    return f"{location}: {first['msg']}{suffix}"


ModelCheck = Callable[[Any], Any]
"""A model's ``after`` validator: called with the fields as attributes, raises
``ValueError`` (or ``AssertionError``) when they break its rule."""
DeferredChecks = dict[str, list[tuple[tuple[str, ...], ModelCheck]]]
"""By tag of a tagged union: where in the output each deferred check's fields sit,
and the check."""
FieldsRule = Callable[[Mapping[str, Any]], object]
"""A model's rule across its members read from its fields as a mapping: raises
``ValueError`` (or ``AssertionError``) when they break it."""

_Model = TypeVar("_Model")
_FIELDS_RULES: Final[dict[ModelCheck, FieldsRule]] = {}


def fields_rule(rule: FieldsRule) -> Callable[[_Model], _Model]:
    """``rule`` as a model's ``after`` validator (``model_validator(mode="after")``).

    The model runs it on its own fields (its ``__dict__``); deferred (``plain_schema``),
    ``admission`` and ``run_checks`` run it on the plain dict itself.  A validator that
    reads attributes is handed a copy of that dict read as attributes (``_Fields``):
    the copy and the attribute reads cost more than the rule (0.15 µs an event).
    """

    def judged(self: _Model) -> _Model:
        rule(self.__dict__)
        return self

    _FIELDS_RULES[judged] = rule
    return judged


def plain_schema(schema: CoreSchema, deferred: DeferredChecks | None = None) -> CoreSchema:
    """``schema`` with every model it names turned into a typed dict of the same fields.

    The rules stay the models' own (every field's schema, ``extra="forbid"``, the
    models' ``after`` validators), so a document is valid under the result (and the
    ``deferred`` checks, if asked for) exactly when it is under ``schema``; only the
    output differs: plain dicts, not model
    instances.  The gateway validates every event it receives and stores none of the
    models, so building them is work thrown away (``schemas.decode``).  Error texts may
    differ where a model's own wording names its class; callers that report errors
    validate a refused document again against ``schema``.

    Given ``deferred``, the ``after`` validators of models nested (through fields
    only) in a choice of a top-level tagged union are left out and listed there
    instead, for the caller to run with ``run_checks``: a call from pydantic-core
    into Python costs more than the check itself.
    """
    return cast(CoreSchema, _plain(schema, deferred, None))


def without_patterns(schema: CoreSchema, members: Collection[str]) -> CoreSchema:
    """``schema``, a tagged union of typed dicts (a ``plain_schema``), with the
    ``pattern`` of each choice's top-level string members ``members`` left out.

    For a caller that proves those patterns another way before it accepts a document
    (the gateway compares ``hash`` with a SHA-256 hex digest) and, before it refuses
    one for anything else, asks the models: a document whose only fault is such a
    pattern is then refused for it, with the models' words, as before.
    """
    if schema.get("type") != "tagged-union":
        raise TypeError("a tagged union of typed dicts is expected")
    choices = {}
    for tag, choice in schema["choices"].items():
        if choice.get("type") != "typed-dict":
            raise TypeError(f"choice {tag!r} is not a typed dict")
        fields = dict(choice["fields"])
        for name in members:
            inner = fields[name]["schema"]
            if inner.get("type") != "str" or "pattern" not in inner:
                raise TypeError(f"{tag}.{name} is not a string with a pattern")
            plain = {key: value for key, value in inner.items() if key != "pattern"}
            fields[name] = {**fields[name], "schema": plain}
        choices[tag] = {**choice, "fields": fields}
    return cast(CoreSchema, {**schema, "choices": choices})


MemberCounts = dict[str, tuple[tuple[str | None, int], ...]]
"""By tag of a tagged union: where each typed dict that no longer refuses extra members
sits (``None``: the document itself; else one of its members, whose value may also be
``null``) and how many members a document's dict there must have."""


def counted_extras(schema: CoreSchema) -> tuple[CoreSchema, MemberCounts]:
    """``schema``, a tagged union of typed dicts (a ``plain_schema``), with
    ``extra="forbid"`` left out of each choice and of its members' typed dicts where
    every member of the typed dict is required and looked up by its own name.

    There a dict that validates holds each of the typed dict's members, so it holds
    an extra one exactly when it holds more than that many: a document is valid under
    ``schema`` exactly when it is under the result and each dict the returned counts
    name (when it is not ``null``) is a ``dict`` of that many members.  pydantic-core's
    own check gathers the members it used into a set and looks every key up again,
    0.3 µs a dict; a ``len`` costs next to nothing.
    """
    if schema.get("type") != "tagged-union":
        raise TypeError("a tagged union of typed dicts is expected")
    choices = {}
    counts: MemberCounts = {}
    for tag, choice in schema["choices"].items():
        if choice.get("type") != "typed-dict":
            raise TypeError(f"choice {tag!r} is not a typed dict")
        counted: list[tuple[str | None, int]] = []
        fields = dict(choice["fields"])
        for name, field in fields.items():
            inner = field["schema"]
            nullable = inner.get("type") == "nullable"
            target = inner["schema"] if nullable else inner
            # Only where the member is always there, under its own name, to be counted.
            if _named_and_required(choice, field) and _countable(target):
                relaxed = _ignoring_extras(target)
                fields[name] = {
                    **field,
                    "schema": {**inner, "schema": relaxed} if nullable else relaxed,
                }
                counted.append((name, len(target["fields"])))
        relaxed_choice = {**choice, "fields": fields}
        if _countable(choice):
            relaxed_choice = _ignoring_extras(relaxed_choice)
            counted.insert(0, (None, len(fields)))
        choices[tag] = relaxed_choice
        counts[str(tag)] = tuple(counted)
    return cast(CoreSchema, {**schema, "choices": choices}), counts


def _countable(node: dict[str, Any]) -> bool:
    """Whether ``node`` is a typed dict refusing extra members, each of its members
    required and looked up by its own name (no alias)."""
    return (
        node.get("type") == "typed-dict"
        and node.get("extra_behavior") == "forbid"
        and "extras_schema" not in node
        and all(_named_and_required(node, field) for field in node["fields"].values())
    )


def _named_and_required(typed_dict: dict[str, Any], field: dict[str, Any]) -> bool:
    required = field.get("required", typed_dict.get("total", True))
    return required is True and field.get("validation_alias") is None


def _ignoring_extras(node: dict[str, Any]) -> dict[str, Any]:
    config = {**(node.get("config") or {}), "extra_fields_behavior": "ignore"}
    return {**node, "extra_behavior": "ignore", "config": config}


Checks = list[tuple[tuple[str, ...], ModelCheck]]
"""One tag's deferred checks (``DeferredChecks``)."""
Admission = Callable[[Any, dict[str, Any]], bool]
"""Given a document and what the relaxed schema made of it, whether the original
schema would have admitted it too (``admission``)."""


def admission(counts: tuple[tuple[str | None, int], ...], checks: Checks) -> Admission:
    """What one tag's documents must still pass after its relaxed, plain schema
    (``counted_extras`` of a ``plain_schema``) validated them: each counted dict is a
    ``dict`` of exactly its typed dict's members, and the deferred ``checks`` hold.

    Written out as one function for the tag, its member names and counts in its code:
    it runs for every event the gateway receives, and the loops over the counts and
    the checks cost 0.3 µs an event, three times the comparisons they make.
    """
    lines = ["def admits(document, fields):"]
    for member, count in counts:
        if member is None:
            lines += [
                f"    if type(document) is not dict or len(document) != {count}:",
                "        return False",
            ]
        else:
            lines += [
                f"    counted = document[{member!r}]",
                "    if counted is not None and "
                f"(type(counted) is not dict or len(counted) != {count}):",
                "        return False",
            ]
    namespace: dict[str, Any] = {"run_checks": run_checks, "checks": checks}
    if len(checks) == 1 and len(checks[0][0]) == 1:  # the usual case: one member's rule
        ((name,), check) = checks[0]
        namespace["judge"] = _on_dict(check)
        lines += [
            f"    judged = fields.get({name!r})",
            "    if type(judged) is dict:  # else an optional member left out: no model",
            "        try:",
            "            judge(judged)",
            "        except (ValueError, AssertionError):",
            "            return False",
            "    return True",
        ]
    elif checks:
        lines.append("    return run_checks(checks, fields)")
    else:
        lines.append("    return True")
    # Member names are a schema's own field names, quoted by repr; counts are ints.
    exec("\n".join(lines), namespace)  # noqa: S102
    return cast(Admission, namespace["admits"])


def run_checks(checks: Checks, document: dict[str, Any]) -> bool:
    """Whether ``document`` (a plain schema's output) passes the deferred ``checks``."""
    for path, check in checks:
        fields: Any = document
        for name in path:
            fields = fields.get(name) if type(fields) is dict else None
        if type(fields) is not dict:
            continue  # an optional member left out: no model there to check
        try:
            _on_dict(check)(fields)
        except (ValueError, AssertionError):
            return False
    return True


def _on_dict(check: ModelCheck) -> FieldsRule:
    """``check`` run on a typed dict's fields: a ``fields_rule`` as it is, any other
    on the fields read as attributes."""
    rule = _FIELDS_RULES.get(check)
    if rule is not None:
        return rule
    return lambda fields: check(_Fields(fields))


_Place = tuple[str, tuple[str, ...]] | None
"""Where a node sits: the tagged union's tag and the field path below it, or
``None`` where a check could not be deferred (in a list, a dict, another union)."""


def _plain(node: Any, deferred: DeferredChecks | None, place: _Place) -> Any:
    if isinstance(node, list):
        return [_plain(item, deferred, None) for item in node]
    if not isinstance(node, dict):
        return node
    kind = node.get("type")
    if kind == "model":
        return _typed_dict(node, deferred, place)
    if kind in ("function-after", "function-wrap", "function-plain") and _is_model(node):
        if kind != "function-after":
            raise TypeError(f"a {kind} validator around a model sees its instance: unsupported")
        if deferred is not None and place is not None and node["function"]["type"] == "no-info":
            tag, path = place
            deferred.setdefault(tag, []).append((path, node["function"]["function"]))
            return _plain(node["schema"], deferred, place)
        return _model_validator_on_dict(node, deferred, place)
    if kind == "tagged-union" and place is None and deferred is not None:
        choices = {
            tag: _plain(choice, deferred, (str(tag), ())) for tag, choice in node["choices"].items()
        }
        return {**{k: _plain(v, deferred, None) for k, v in node.items()}, "choices": choices}
    if kind in ("nullable", "default") and place is not None:
        return {**node, "schema": _plain(node["schema"], deferred, place)}
    return {key: _plain(value, deferred, None) for key, value in node.items()}


def _is_model(node: dict[str, Any]) -> bool:
    inner = node.get("schema")
    while isinstance(inner, dict) and inner.get("type", "").startswith("function-"):
        inner = inner.get("schema")
    return isinstance(inner, dict) and inner.get("type") == "model"


def _typed_dict(model: dict[str, Any], deferred: DeferredChecks | None, place: _Place) -> Any:
    for unsupported in ("post_init", "custom_init", "root_model"):
        if model.get(unsupported):
            raise TypeError(f"model {model['cls'].__name__} has {unsupported}: unsupported")
    fields_schema = model["schema"]
    if fields_schema.get("type") != "model-fields" or fields_schema.get("computed_fields"):
        raise TypeError(f"model {model['cls'].__name__} is not plain fields: unsupported")
    config = dict(model.get("config") or {})
    fields: dict[str, core_schema.TypedDictField] = {}
    for name, field in fields_schema["fields"].items():
        alias = field.get("validation_alias")
        inside = None if place is None or alias is not None else (place[0], (*place[1], name))
        inner = _plain(field["schema"], deferred, inside)
        fields[name] = core_schema.typed_dict_field(
            inner, required=inner.get("type") != "default", validation_alias=alias
        )
    return dict(
        core_schema.typed_dict_schema(
            fields,
            extra_behavior=config.get("extra_fields_behavior", "ignore"),
            config=cast(core_schema.CoreConfig, config),
        )
    )


def _model_validator_on_dict(
    node: dict[str, Any], deferred: DeferredChecks | None, place: _Place
) -> dict[str, Any]:
    """An ``after`` validator written for a model instance, run on its typed dict:
    it reads the fields as attributes, and what it returns (the instance) is
    replaced by the dict it judged."""
    function_info = node["function"]
    check = function_info["function"]
    inner = _plain(node["schema"], deferred, place)
    if function_info["type"] == "with-info":

        def judged_with_info(document: dict[str, Any], info: Any) -> dict[str, Any]:
            check(_Fields(document), info)
            return document

        return dict(core_schema.with_info_after_validator_function(judged_with_info, inner))
    # No Python frame of its own: the fields become ``_Fields`` (a C call), the
    # validator judges them (the one Python call), and a plain dict is handed on.
    return dict(
        core_schema.chain_schema(
            [
                inner,
                core_schema.no_info_plain_validator_function(_Fields),
                core_schema.no_info_plain_validator_function(check),
                core_schema.no_info_plain_validator_function(dict.copy),
            ]
        )
    )


class _Fields(dict[str, Any]):
    """A typed dict's fields read as attributes, as a model validator reads them:
    one dict copy, and attribute reads that are plain dict lookups in C."""

    __slots__ = ()
    __getattribute__ = dict.__getitem__
