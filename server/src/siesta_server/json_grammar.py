"""JSON schema -> GBNF grammar for `response_format`, so constrained answers are valid JSON.

Only a subset of JSON Schema is supported, and every schema outside it is refused with a
clear message instead of being half-enforced: `type` (one or a list), `enum`, `const`,
`anyOf`, strings with `minLength`/`maxLength`, objects with `properties`/`required`
(properties come in the schema's order, required ones first; no extra properties are ever
generated), arrays with `items`/`minItems`/`maxItems`, and annotations such as `title` or
`description`, which are ignored.

Strings never contain what JSON forbids unescaped (control characters, lone surrogates),
whitespace is at most one space after punctuation, and numbers have a bounded number of
digits: with bounded strings and arrays the whole answer is bounded, so it ends by itself.
"""

from __future__ import annotations

import json
from typing import Any

ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$schema",
        "$id",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)
KEYWORDS_BY_TYPE: dict[str, frozenset[str]] = {
    "string": frozenset({"minLength", "maxLength"}),
    "integer": frozenset(),
    "number": frozenset(),
    "boolean": frozenset(),
    "null": frozenset(),
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "minItems", "maxItems"}),
}
GENERIC = frozenset({"type", "enum", "const", "anyOf"})

# Printable ASCII but `"` and `\`, then every Unicode scalar value above DEL except
# surrogates: exactly the characters JSON allows unescaped (minus DEL, to be safe).
_CHAR_CLASS = r"[\x20-\x21\x23-\x5B\x5D-\x7E\u0080-\uD7FF\uE000-\U0010FFFF]"
# \uXXXX escapes, but never of a surrogate (a lone one is not a character).
_HEX_ESCAPE = r'"u" ([0-9a-cA-Ce-fE-F] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2})'

_PRIMITIVES = {
    "ws": '| " "',
    "char": f'{_CHAR_CLASS} | "\\\\" (["\\\\/bfnrt] | {_HEX_ESCAPE})',
    "string": '"\\"" char* "\\""',
    "integer": '"-"? ("0" | [1-9] [0-9]{0,15})',
    "number": '"-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?',
    "boolean": '"true" | "false"',
    "null": '"null"',
    "value": "object | array | string | number | boolean | null",
    "object": '"{" ws (string ":" ws value ("," ws string ":" ws value)*)? "}"',
    "array": '"[" ws (value ("," ws value)*)? "]"',
}


class SchemaError(ValueError):
    """A JSON schema outside the supported subset, or one no value can satisfy."""


def grammar_for_json_object() -> str:
    """Any JSON object (`response_format: {"type": "json_object"}`)."""
    builder = _Builder()
    return builder.render("object")


def grammar_for_schema(schema: Any) -> str:
    """GBNF whose every complete match is JSON valid against `schema`."""
    builder = _Builder()
    root = builder.value(schema, "$")
    return builder.render(root)


class _Builder:
    def __init__(self) -> None:
        self._rules: dict[str, str] = {}
        self._names: dict[str, str] = {}  # body -> rule name, to share identical rules

    def render(self, root: str) -> str:
        lines = [f"root ::= {root}"]
        lines += [f"{name} ::= {body}" for name, body in _PRIMITIVES.items()]
        lines += [f"{name} ::= {body}" for name, body in self._rules.items()]
        return "\n".join(lines) + "\n"

    def _rule(self, body: str) -> str:
        if body in _PRIMITIVES.values():
            return next(name for name, b in _PRIMITIVES.items() if b == body)
        name = self._names.get(body)
        if name is None:
            name = f"r{len(self._rules)}"
            self._rules[name] = body
            self._names[body] = name
        return name

    def value(self, schema: Any, where: str) -> str:
        """The name of a rule matching exactly the JSON texts valid against `schema`."""
        if schema is True or schema == {}:
            return "value"
        if not isinstance(schema, dict):
            raise SchemaError(f"{where}: a schema must be an object, got {schema!r}")
        unknown = set(schema) - ANNOTATIONS - GENERIC - set().union(*KEYWORDS_BY_TYPE.values())
        if unknown:
            raise SchemaError(
                f"{where}: unsupported JSON schema keyword(s) {', '.join(sorted(unknown))}; "
                "supported: type, enum, const, anyOf, properties, required, "
                "additionalProperties, items, minItems, maxItems, minLength, maxLength"
            )
        if "const" in schema:
            return self._rule(_literal(schema["const"]))
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise SchemaError(f"{where}.enum: must be a non-empty list")
            return self._rule(" | ".join(_literal(v) for v in values))
        if "anyOf" in schema:
            options = schema["anyOf"]
            if not isinstance(options, list) or not options:
                raise SchemaError(f"{where}.anyOf: must be a non-empty list")
            if set(schema) - ANNOTATIONS - {"anyOf"}:
                raise SchemaError(f"{where}: anyOf cannot be combined with other keywords")
            names = [self.value(option, f"{where}.anyOf[{i}]") for i, option in enumerate(options)]
            return self._rule(" | ".join(names))
        types = schema.get("type")
        if types is None:
            types = _implied_types(schema)
        if isinstance(types, str):
            types = [types]
        if not isinstance(types, list) or not types:
            raise SchemaError(f"{where}.type: must be a type name or a non-empty list of them")
        names = []
        for kind in types:
            if kind not in KEYWORDS_BY_TYPE:
                raise SchemaError(f"{where}.type: unknown type {kind!r}")
            names.append(self._typed(kind, schema, where))
        return names[0] if len(names) == 1 else self._rule(" | ".join(names))

    def _typed(self, kind: str, schema: dict[str, Any], where: str) -> str:
        if kind == "string":
            low, high = _bounds(schema, "minLength", "maxLength", where)
            if low == 0 and high is None:
                return "string"
            return self._rule(f'"\\"" {_repeat("char", low, high)} "\\""')
        if kind == "object":
            return self._object(schema, where)
        if kind == "array":
            return self._array(schema, where)
        return kind  # integer, number, boolean, null: primitives

    def _object(self, schema: dict[str, Any], where: str) -> str:
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        if not isinstance(properties, dict):
            raise SchemaError(f"{where}.properties: must be an object")
        if not isinstance(required, list) or not all(isinstance(k, str) for k in required):
            raise SchemaError(f"{where}.required: must be a list of property names")
        if len(set(required)) != len(required):
            raise SchemaError(f"{where}.required: names must be unique")
        if not properties and not required:
            return (
                "object"
                if schema.get("additionalProperties", True) is not False
                else (self._rule('"{" ws "}"'))
            )

        def member(key: str) -> str:
            value = self.value(properties.get(key, {}), f"{where}.properties.{key}")
            return self._rule(f'{_literal(key)} ":" ws {value}')

        needed = [member(key) for key in required]
        optional = [member(key) for key in properties if key not in required]
        if needed:
            body = ' "," ws '.join(needed)
            body += "".join(f' ("," ws {name})?' for name in optional)
            return self._rule(f'"{{" ws {body} "}}"')
        # No required members: any in-order subset of the optional ones, commas between.
        chain = optional[-1]
        for name in reversed(optional[:-1]):
            chain = self._rule(f'{name} ("," ws {chain})? | {chain}')
        return self._rule(f'"{{" ws ({chain})? "}}"')

    def _array(self, schema: dict[str, Any], where: str) -> str:
        item = self.value(schema.get("items", {}), f"{where}.items")
        low, high = _bounds(schema, "minItems", "maxItems", where)
        if high == 0:
            return self._rule('"[" ws "]"')
        rest_high = None if high is None else high - 1
        more = _repeat(self._rule(f'"," ws {item}'), max(low - 1, 0), rest_high)
        if low == 0:
            return self._rule(f'"[" ws ({item} {more})? "]"')
        return self._rule(f'"[" ws {item} {more} "]"')


def _implied_types(schema: dict[str, Any]) -> list[str]:
    if "properties" in schema or "required" in schema:
        return ["object"]
    if "items" in schema or "minItems" in schema or "maxItems" in schema:
        return ["array"]
    if "minLength" in schema or "maxLength" in schema:
        return ["string"]
    return list(KEYWORDS_BY_TYPE)  # {} with only annotations: any value


def _bounds(
    schema: dict[str, Any], low_key: str, high_key: str, where: str
) -> tuple[int, int | None]:
    low = schema.get(low_key, 0)
    high = schema.get(high_key)
    for key, bound in ((low_key, low), (high_key, high)):
        if bound is not None and (
            not isinstance(bound, int) or isinstance(bound, bool) or bound < 0
        ):
            raise SchemaError(f"{where}.{key}: must be a non-negative integer")
    if high is not None and low > high:
        raise SchemaError(f"{where}: {low_key} {low} is larger than {high_key} {high}")
    return low, high


def _repeat(rule: str, low: int, high: int | None) -> str:
    if high is None:
        return f"{rule}{{{low},}}" if low else f"{rule}*"
    if high == 0:
        return ""
    return f"{rule}{{{low},{high}}}"


def _literal(value: Any) -> str:
    """A GBNF string literal matching exactly the compact JSON text of `value`."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        raise SchemaError(f"{value!r} is not a JSON value") from None
    return '"' + "".join(_gbnf_char(c) for c in text) + '"'


def _gbnf_char(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    code = ord(char)
    if 0x20 <= code < 0x7F:
        return char
    if code <= 0xFF:
        return f"\\x{code:02X}"
    if code <= 0xFFFF:
        return f"\\u{code:04X}"
    return f"\\U{code:08X}"
