"""JSON Schema as a registry format (`schemaType` JSON), as Confluent's registry has it.

Parsing: the draft comes from `$schema` (draft-07 when absent, Confluent's default) and the
schema is checked against its metaschema with `jsonschema`. References are resolved by name:
a reference's name is the URI a `$ref` uses (Confluent's rule), held in a `referencing`
registry; every `$ref` must resolve at parse time.

Identity: canonical() is the JSON with sorted keys and no whitespace.

Compatibility follows Confluent's json `SchemaDiff` (json-schema-provider .../json/diff):
walk writer ("original") and reader ("update") side by side, record a Difference type for
each change and call the pair compatible when every difference is in COMPATIBLE. Confluent's
model is everit's: a `type` list is an anyOf of one schema per type, a schema with keywords of
several kinds (type + enum, or properties + oneOf) is an allOf of its parts, `integer` is a
number that requires an integer, `$ref` is replaced by its target, `const` is an enum of one.

Wire format: the payload after the 5-byte header is compact JSON (orjson's, as confluent's
JSONSerializer writes: no spaces, non-ASCII kept); encode and decode both validate.
"""
from __future__ import annotations

import json
import re

import jsonschema
import referencing
import referencing.exceptions
import referencing.jsonschema

from ._formats import InvalidSchema, SerializationError

__all__ = ["COMPATIBLE", "FORMAT", "JsonSchemaFormat", "ParsedJsonSchema"]

# Confluent SchemaDiff.COMPATIBLE_CHANGES: the difference types that keep a pair compatible.
_COMPATIBLE_TEXT = """
ID_CHANGED DESCRIPTION_CHANGED TITLE_CHANGED DEFAULT_CHANGED SCHEMA_REMOVED TYPE_EXTENDED
MAX_LENGTH_INCREASED MAX_LENGTH_REMOVED MIN_LENGTH_DECREASED MIN_LENGTH_REMOVED PATTERN_REMOVED
MAXIMUM_INCREASED MAXIMUM_REMOVED MINIMUM_DECREASED MINIMUM_REMOVED EXCLUSIVE_MAXIMUM_INCREASED
EXCLUSIVE_MAXIMUM_REMOVED EXCLUSIVE_MINIMUM_DECREASED EXCLUSIVE_MINIMUM_REMOVED
MULTIPLE_OF_REDUCED MULTIPLE_OF_REMOVED REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED
REQUIRED_ATTRIBUTE_REMOVED DEPENDENCY_ARRAY_NARROWED DEPENDENCY_ARRAY_REMOVED
DEPENDENCY_SCHEMA_REMOVED MAX_PROPERTIES_INCREASED MAX_PROPERTIES_REMOVED
MIN_PROPERTIES_DECREASED MIN_PROPERTIES_REMOVED ADDITIONAL_PROPERTIES_ADDED
ADDITIONAL_PROPERTIES_EXTENDED PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL
REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL
OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL
PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL
PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL MAX_ITEMS_INCREASED
MAX_ITEMS_REMOVED MIN_ITEMS_DECREASED MIN_ITEMS_REMOVED UNIQUE_ITEMS_REMOVED
ADDITIONAL_ITEMS_ADDED ADDITIONAL_ITEMS_EXTENDED
ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL ITEM_ADDED_TO_CLOSED_CONTENT_MODEL
ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL
ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL ENUM_ARRAY_EXTENDED
COMBINED_TYPE_EXTENDED PRODUCT_TYPE_NARROWED SUM_TYPE_EXTENDED NOT_TYPE_NARROWED
"""
COMPATIBLE = frozenset(_COMPATIBLE_TEXT.split())

# Keywords whose values are subschemas (for the parse-time $ref walk).
_SUB_ONE = ("additionalProperties", "additionalItems", "contains", "not", "if", "then", "else",
            "propertyNames", "unevaluatedItems", "unevaluatedProperties", "items")
_SUB_LIST = ("allOf", "anyOf", "oneOf", "items", "prefixItems")
_SUB_MAP = ("properties", "patternProperties", "definitions", "$defs", "dependentSchemas",
            "dependencies")

# everit's schema kinds, by the keywords that imply them when `type` is absent.
_KIND_KEYWORDS = {
    "object": ("properties", "required", "additionalProperties", "patternProperties",
               "minProperties", "maxProperties", "dependencies", "dependentRequired",
               "dependentSchemas", "propertyNames"),
    "array": ("items", "additionalItems", "prefixItems", "minItems", "maxItems", "uniqueItems",
              "contains"),
    "string": ("minLength", "maxLength", "pattern"),
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
}
_TYPE_KIND = {"object": "object", "array": "array", "string": "string", "number": "number",
              "integer": "number", "boolean": "boolean", "null": "null"}
_COMBINERS = ("allOf", "anyOf", "oneOf")
_TYPED_PARTS = ("types", "object", "array", "string", "number", "boolean", "null", "empty")


def _compact(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _pointer(path) -> str:
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path)


class JsonSchemaFormat:
    name = "JSON"

    def parse(self, schema: str, references: dict[str, str] | None = None) -> ParsedJsonSchema:
        root = _load(schema, "schema")
        validator_cls = jsonschema.validators.validator_for(root, default=jsonschema.Draft7Validator)
        spec = referencing.jsonschema.specification_with(
            validator_cls.META_SCHEMA.get("$schema", ""), default=referencing.jsonschema.DRAFT7)
        _check(validator_cls, root, "schema")
        resources = []
        for name, text in sorted((references or {}).items()):
            doc = _load(text, f"reference {name!r}")
            ref_cls = jsonschema.validators.validator_for(doc, default=validator_cls)
            _check(ref_cls, doc, f"reference {name!r}")
            resources.append((name, referencing.Resource.from_contents(doc, default_specification=spec)))
        registry = referencing.Registry().with_resources(resources)
        root_resource = referencing.Resource.from_contents(root, default_specification=spec)
        resolver = registry.resolver_with_root(root_resource)
        _check_refs(root, resolver, [], "schema")
        for name, resource in resources:
            _check_refs(resource.contents, registry.resolver(base_uri=name), [], f"reference {name!r}")
        return ParsedJsonSchema(root, validator_cls, registry, resolver, spec)


def _load(text, what):
    if not isinstance(text, str):
        raise InvalidSchema(f"{what}: a JSON Schema is a JSON text, got {type(text).__name__}")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidSchema(f"{what}: not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(doc, (dict, bool)):
        raise InvalidSchema(f"{what}: a JSON Schema is an object or a boolean, got {type(doc).__name__}")
    return doc


def _check(validator_cls, doc, what):
    try:
        validator_cls.check_schema(doc)
    except jsonschema.SchemaError as e:
        raise InvalidSchema(f"{what}: invalid at {_pointer(e.path)}: {e.message}") from None


def _check_refs(node, resolver, path, what):
    """Every `$ref` in `node` (a schema) resolves, or InvalidSchema naming its path."""
    if not isinstance(node, dict):
        return
    if "$id" in node and path:
        resolver = _enter(resolver, node)
    ref = node.get("$ref")
    if isinstance(ref, str):
        try:
            resolver.lookup(ref)
        except referencing.exceptions.Unresolvable:
            raise InvalidSchema(
                f"{what}: $ref {ref!r} at {_pointer(path)} cannot be resolved "
                "(a reference's name is the URI a $ref uses)") from None
    for key in _SUB_ONE:
        if isinstance(node.get(key), dict):
            _check_refs(node[key], resolver, [*path, key], what)
    for key in _SUB_LIST:
        if isinstance(node.get(key), list):
            for i, sub in enumerate(node[key]):
                _check_refs(sub, resolver, [*path, key, i], what)
    for key in _SUB_MAP:
        if isinstance(node.get(key), dict):
            for name, sub in node[key].items():
                _check_refs(sub, resolver, [*path, key, name], what)


def _enter(resolver, node):
    try:
        return resolver.in_subresource(referencing.jsonschema.DRAFT7.create_resource(node)
                                       if "$schema" not in node
                                       else referencing.Resource.from_contents(node))
    except referencing.exceptions.CannotDetermineSpecification:
        return resolver


class ParsedJsonSchema:
    def __init__(self, root, validator_cls, registry, resolver, spec):
        self.schema = root
        self._validator = validator_cls(root, registry=registry)
        self._resolver = resolver
        self._spec = spec

    def canonical(self) -> str:
        return _compact(self.schema)

    def names(self) -> list[str]:
        title = self.schema.get("title") if isinstance(self.schema, dict) else None
        return [title] if isinstance(title, str) and title else []

    def _validate(self, obj, what):
        try:
            error = jsonschema.exceptions.best_match(self._validator.iter_errors(obj))
        except referencing.exceptions.Unresolvable as e:
            raise SerializationError(f"{what}: schema reference cannot be resolved: {e}") from None
        if error is not None:
            raise SerializationError(f"{what} does not match the schema at {error.json_path}: "
                                     f"{error.message}")

    def encode(self, obj) -> bytes:
        self._validate(obj, "value")
        try:
            return json.dumps(obj, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode()
        except (TypeError, ValueError) as e:
            raise SerializationError(f"value is not JSON: {e}") from None

    def decode(self, payload: bytes):
        try:
            obj = json.loads(bytes(payload))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SerializationError(f"payload is not JSON: {e}") from None
        self._validate(obj, "payload")
        return obj

    def incompatibilities(self, writer: ParsedJsonSchema) -> list[str]:
        if not isinstance(writer, ParsedJsonSchema):
            return [f"writer is a {getattr(writer, 'name', type(writer).__name__)} schema, not JSON"]
        ctx = _Context()
        _compare(ctx, _Node(writer.schema, writer._resolver), _Node(self.schema, self._resolver))
        return [f"{path}: {kind}" for path, kind in ctx.differences if kind not in COMPATIBLE]


FORMAT = JsonSchemaFormat()


# ---- compatibility (Confluent's SchemaDiff over everit's model) ---------------------------------

class _Context:
    def __init__(self, path=(), stack=None):
        self.path = list(path)
        self.differences: list[tuple[str, str]] = []
        self.stack = stack if stack is not None else set()

    def add(self, kind, *extra):
        self.differences.append((_pointer([*self.path, *extra]) if self.path or extra else "#/",
                                 kind))

    def sub(self):
        return _Context(self.path, self.stack)

    def compatible(self):
        return all(kind in COMPATIBLE for _, kind in self.differences)


class _Node:
    """A schema (dict or bool) with the resolver its `$ref`s are resolved in."""

    __slots__ = ("resolver", "schema")

    def __init__(self, schema, resolver):
        if isinstance(schema, dict) and "$id" in schema:
            resolver = _enter(resolver, schema)
        seen = 0
        while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 32:
            resolved = resolver.lookup(schema["$ref"])
            schema, resolver = resolved.contents, resolved.resolver
            seen += 1
        self.schema = schema
        self.resolver = resolver

    def child(self, schema):
        return _Node(schema, self.resolver)

    def get(self, key, default=None):
        return self.schema.get(key, default) if isinstance(self.schema, dict) else default

    # everit's classification
    def kind(self):
        s = self.schema
        if s is True or s == {} or (isinstance(s, dict) and not self.parts()):
            return "empty"
        if s is False:
            return "false"
        parts = self.parts()
        if len(parts) > 1 or parts[0][0] in _COMBINERS or parts[0][0] == "types":
            return "combined"
        return parts[0][0]

    def parts(self):
        """[(kind, payload)]: the pieces everit would build for this dict."""
        s = self.schema
        if not isinstance(s, dict):
            return []
        out = []
        types = s.get("type")
        if isinstance(types, list):
            out.append(("types", types))
        elif isinstance(types, str):
            out.append((_TYPE_KIND.get(types, "empty"), types))
        else:
            for kind, words in _KIND_KEYWORDS.items():
                if any(w in s for w in words):
                    out.append((kind, None))
        if "enum" in s or "const" in s:
            out.append(("enum", None))
        if "not" in s:
            out.append(("not", None))
        for c in _COMBINERS:
            if c in s:
                out.append((c, None))
        return out

    def combined(self):
        """(criterion, [subnodes]) of a combined node."""
        s = self.schema
        parts = self.parts()
        if len(parts) == 1:
            kind, payload = parts[0]
            if kind == "types":
                rest = {k: v for k, v in s.items() if k not in ("type", "enum", "const", "not",
                                                               *_COMBINERS)}
                return "anyOf", [self.child({**rest, "type": t}) for t in payload]
            return kind, [self.child(sub) for sub in s[kind]]
        typed = {k: v for k, v in s.items() if k not in ("enum", "const", "not", *_COMBINERS)}
        subs = []
        inferred = [kind for kind, payload in parts if kind in _KIND_KEYWORDS and payload is None]
        if len(inferred) > 1:  # no `type`, keywords of several kinds: one piece per kind
            subs += [self.child({w: s[w] for w in _KIND_KEYWORDS[kind] if w in s})
                     for kind in inferred]
        elif any(kind in _TYPED_PARTS for kind, _ in parts):
            subs.append(self.child(typed))
        if "enum" in s or "const" in s:
            subs.append(self.child({"enum": s["enum"]} if "enum" in s else {"const": s["const"]}))
        if "not" in s:
            subs.append(self.child({"not": s["not"]}))
        subs += [self.child({c: s[c]}) for c in _COMBINERS if c in s]
        return "allOf", subs


def _compare(ctx, original, update):
    if original is None and update is None:
        return
    if original is None:
        ctx.add("SCHEMA_ADDED")
        return
    if update is None:
        ctx.add("SCHEMA_REMOVED")
        return
    okind, ukind = original.kind(), update.kind()
    if okind != "combined" and ukind == "combined":
        crit, subs = update.combined()
        if len(subs) == 1:
            sub = ctx.sub()
            _compare(sub, original, subs[0])
            if sub.compatible():
                ctx.differences += sub.differences
                return
        elif crit in ("anyOf", "oneOf"):
            for s in subs:
                sub = ctx.sub()
                _compare(sub, original, s)
                if sub.compatible():
                    ctx.differences += sub.differences
                    ctx.add("SUM_TYPE_EXTENDED")
                    return
    elif okind == "combined" and ukind != "combined":
        _crit, subs = original.combined()
        if len(subs) == 1:
            sub = ctx.sub()
            _compare(sub, subs[0], update)
            if sub.compatible():
                ctx.differences += sub.differences
                return
    if okind != ukind:
        if okind == "false" or ukind == "empty":
            return
        ctx.add("TYPE_CHANGED")
        return
    key = (id(original.schema), id(update.schema))
    if key in ctx.stack:
        return
    ctx.stack.add(key)
    try:
        for word, kind in (("$id", "ID_CHANGED"), ("title", "TITLE_CHANGED"),
                           ("description", "DESCRIPTION_CHANGED"), ("default", "DEFAULT_CHANGED")):
            if original.get(word) != update.get(word):
                ctx.add(kind)
        compare = _BY_KIND.get(okind)
        if compare is not None:
            compare(ctx, original, update)
    finally:
        ctx.stack.discard(key)


def _limit(ctx, word, old, new, stem, bigger_is="INCREASED", smaller_is="DECREASED"):
    if old == new:
        return
    if old is None:
        ctx.add(f"{stem}_ADDED", word)
    elif new is None:
        ctx.add(f"{stem}_REMOVED", word)
    elif old < new:
        ctx.add(f"{stem}_{bigger_is}", word)
    elif old > new:
        ctx.add(f"{stem}_{smaller_is}", word)


def _num(node, word):
    v = node.get(word)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _compare_string(ctx, o, u):
    _limit(ctx, "maxLength", _num(o, "maxLength"), _num(u, "maxLength"), "MAX_LENGTH")
    _limit(ctx, "minLength", _num(o, "minLength"), _num(u, "minLength"), "MIN_LENGTH")
    op, up = o.get("pattern"), u.get("pattern")
    if op != up:
        ctx.add("PATTERN_ADDED" if op is None else "PATTERN_REMOVED" if up is None
                else "PATTERN_CHANGED", "pattern")


def _compare_number(ctx, o, u):
    for word, stem in (("maximum", "MAXIMUM"), ("minimum", "MINIMUM"),
                       ("exclusiveMaximum", "EXCLUSIVE_MAXIMUM"),
                       ("exclusiveMinimum", "EXCLUSIVE_MINIMUM")):
        _limit(ctx, word, _num(o, word), _num(u, word), stem)
    om, um = _num(o, "multipleOf"), _num(u, "multipleOf")
    if om != um:
        if om is None:
            ctx.add("MULTIPLE_OF_ADDED", "multipleOf")
        elif um is None:
            ctx.add("MULTIPLE_OF_REMOVED", "multipleOf")
        elif int(om) and int(um) % int(om) == 0:
            ctx.add("MULTIPLE_OF_EXPANDED", "multipleOf")
        elif int(um) and int(om) % int(um) == 0:
            ctx.add("MULTIPLE_OF_REDUCED", "multipleOf")
        else:
            ctx.add("MULTIPLE_OF_CHANGED", "multipleOf")
    oint, uint = o.get("type") == "integer", u.get("type") == "integer"
    if oint and not uint:
        ctx.add("TYPE_EXTENDED")
    elif uint and not oint:
        ctx.add("TYPE_NARROWED")


def _enum_values(node):
    values = node.get("enum") if "enum" in node.schema else [node.get("const")]
    return {_compact(v) for v in values}


def _compare_enum(ctx, o, u):
    ov, uv = _enum_values(o), _enum_values(u)
    if ov != uv:
        ctx.add("ENUM_ARRAY_EXTENDED" if uv >= ov else "ENUM_ARRAY_NARROWED" if ov >= uv
                else "ENUM_ARRAY_CHANGED", "enum")


def _compare_not(ctx, o, u):
    on, un = o.child(o.get("not")), u.child(u.get("not"))
    if _compact(on.schema) == _compact(un.schema):
        return
    sub = ctx.sub()
    _compare(sub, un, on)  # reader excludes less than the writer did: its `not` narrowed
    ctx.add("NOT_TYPE_NARROWED" if sub.compatible() else "NOT_TYPE_EXTENDED", "not")


def _criterion_change(o_crit, o_subs, u_crit, u_subs):
    if o_crit == u_crit:
        return None
    if u_crit == "anyOf":
        return "COMBINED_TYPE_EXTENDED"
    if u_crit == "oneOf":
        return "COMBINED_TYPE_EXTENDED" if len(o_subs) == 1 else "COMBINED_TYPE_CHANGED"
    if len(o_subs) == 1 and len(u_subs) == 1:
        return "COMBINED_TYPE_EXTENDED"
    return "COMBINED_TYPE_CHANGED"


def _compare_combined(ctx, o, u):
    o_crit, o_subs = o.combined()
    u_crit, u_subs = u.combined()
    change = _criterion_change(o_crit, o_subs, u_crit, u_subs)
    if change:
        ctx.add(change)
        if change == "COMBINED_TYPE_CHANGED":
            return
    o_subs = _dedupe(o_subs)
    u_subs = _dedupe(u_subs)
    if len(o_subs) < len(u_subs):
        ctx.add("PRODUCT_TYPE_EXTENDED" if u_crit == "allOf" else "SUM_TYPE_EXTENDED")
    elif len(o_subs) > len(u_subs):
        ctx.add("PRODUCT_TYPE_NARROWED" if u_crit == "allOf" else "SUM_TYPE_NARROWED")
    edges = {}
    for i, os_ in enumerate(o_subs):
        for j, us in enumerate(u_subs):
            sub = _Context([*ctx.path, f"{o_crit}", i], ctx.stack)
            _compare(sub, os_, us)
            if sub.compatible():
                edges[(i, j)] = sub.differences
    match = _max_matching(len(o_subs), len(u_subs), edges)
    for edge in match:
        ctx.differences += edges[edge]
    if len(match) < min(len(o_subs), len(u_subs)):
        ctx.add("COMBINED_TYPE_SUBSCHEMAS_CHANGED")


def _dedupe(nodes):
    seen, out = set(), []
    for n in nodes:
        key = _compact(n.schema)
        if key not in seen:
            seen.add(key)
            out.append(n)
    return out


def _max_matching(left, right, edges):
    """Maximum bipartite matching (Kuhn's augmenting paths) over compatible (i, j) edges."""
    adj = {i: [j for (a, j) in edges if a == i] for i in range(left)}
    match_right: dict[int, int] = {}

    def augment(i, seen):
        for j in adj[i]:
            if j not in seen:
                seen.add(j)
                if j not in match_right or augment(match_right[j], seen):
                    match_right[j] = i
                    return True
        return False

    for i in range(left):
        augment(i, set())
    return [(i, j) for j, i in match_right.items()]


def _is_open(node):
    return not node.get("patternProperties") and node.get("additionalProperties", True) is True


def _partial(node, key):
    for pattern, sub in (node.get("patternProperties") or {}).items():
        try:
            if re.search(pattern, key):
                return node.child(sub)
        except re.error:
            continue
    ap = node.get("additionalProperties", True)
    return node.child(ap) if isinstance(ap, dict) else None


def _has_default(node):
    return isinstance(node.schema, dict) and "default" in node.schema


def _covered(ctx, writer, reader, what):
    """A property/item added or removed where the other side's additional schema covers it."""
    sub = ctx.sub()
    _compare(sub, writer, reader)
    ctx.differences += sub.differences
    ctx.add(f"{what}_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL" if sub.compatible()
            else f"{what}_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL")


def _compare_object(ctx, o, u):
    oprops, uprops = o.get("properties") or {}, u.get("properties") or {}
    oreq, ureq = set(o.get("required") or ()), set(u.get("required") or ())
    for key in oprops:
        if key in uprops:
            if key in oreq and key not in ureq:
                ctx.add("REQUIRED_ATTRIBUTE_REMOVED", "required", key)
            elif key in ureq and key not in oreq:
                ctx.add("REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED"
                        if _has_default(u.child(uprops[key])) else "REQUIRED_ATTRIBUTE_ADDED",
                        "required", key)
    for key in sorted(set(oprops) | set(uprops)):
        ctx.path += ["properties", key]
        try:
            if key not in uprops:
                if _is_open(u):
                    ctx.add("PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL")
                elif (partial := _partial(u, key)) is not None:
                    _covered(ctx, o.child(oprops[key]), partial, "PROPERTY_REMOVED")
                elif oprops[key] is False:
                    ctx.add("PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL")
                else:
                    ctx.add("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL")
            elif key not in oprops:
                added = u.child(uprops[key])
                if _is_open(o):
                    ctx.add("PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL"
                            if added.kind() == "empty" else "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL")
                else:
                    if (partial := _partial(o, key)) is not None:
                        _covered(ctx, partial, added, "PROPERTY_ADDED")
                    if key in ureq:
                        ctx.add("REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL"
                                if _has_default(added) else
                                "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL")
                    else:
                        ctx.add("OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL")
            else:
                _compare(ctx, o.child(oprops[key]), u.child(uprops[key]))
        finally:
            del ctx.path[-2:]
    _compare_dependencies(ctx, o, u)
    _compare_additional(ctx, o, u, o.get("additionalProperties", True),
                        u.get("additionalProperties", True), "additionalProperties")
    _limit(ctx, "maxProperties", _num(o, "maxProperties"), _num(u, "maxProperties"), "MAX_PROPERTIES")
    _limit(ctx, "minProperties", _num(o, "minProperties"), _num(u, "minProperties"), "MIN_PROPERTIES")


def _compare_additional(ctx, o, u, oadd, uadd, word):
    """additionalProperties / additionalItems: False, absent/True, or a schema."""
    stem = "ADDITIONAL_PROPERTIES" if word == "additionalProperties" else "ADDITIONAL_ITEMS"
    ctx.path.append(word)
    try:
        opermits, upermits = oadd is not False, uadd is not False
        if opermits != upermits:
            ctx.add(f"{stem}_ADDED" if upermits else f"{stem}_REMOVED")
        elif not isinstance(oadd, dict) and isinstance(uadd, dict):
            ctx.add(f"{stem}_NARROWED")
        elif isinstance(oadd, dict) and not isinstance(uadd, dict):
            ctx.add(f"{stem}_EXTENDED")
        elif isinstance(oadd, dict):
            _compare(ctx, o.child(oadd), u.child(uadd))
    finally:
        ctx.path.pop()


def _dependencies(node):
    arrays, schemas = dict(node.get("dependentRequired") or {}), dict(node.get("dependentSchemas") or {})
    for key, dep in (node.get("dependencies") or {}).items():
        (arrays if isinstance(dep, list) else schemas)[key] = dep
    return arrays, schemas


def _compare_dependencies(ctx, o, u):
    oarr, osch = _dependencies(o)
    uarr, usch = _dependencies(u)
    for key in sorted(set(oarr) | set(uarr)):
        if key not in uarr:
            ctx.add("DEPENDENCY_ARRAY_REMOVED", "dependencies", key)
        elif key not in oarr:
            ctx.add("DEPENDENCY_ARRAY_ADDED", "dependencies", key)
        elif set(oarr[key]) != set(uarr[key]):
            od, ud = set(oarr[key]), set(uarr[key])
            ctx.add("DEPENDENCY_ARRAY_EXTENDED" if ud >= od else "DEPENDENCY_ARRAY_NARROWED"
                    if od >= ud else "DEPENDENCY_ARRAY_CHANGED", "dependencies", key)
    for key in sorted(set(osch) | set(usch)):
        if key not in usch:
            ctx.add("DEPENDENCY_SCHEMA_REMOVED", "dependencies", key)
        elif key not in osch:
            ctx.add("DEPENDENCY_SCHEMA_ADDED", "dependencies", key)
        else:
            ctx.path += ["dependencies", key]
            try:
                _compare(ctx, o.child(osch[key]), u.child(usch[key]))
            finally:
                del ctx.path[-2:]


def _array_parts(node):
    """(all-items schema, tuple item schemas, additional items) in draft-07 terms."""
    items, prefix = node.get("items"), node.get("prefixItems")
    if isinstance(prefix, list):
        return None, prefix, node.get("items", True) if "items" in node.schema else True
    if isinstance(items, list):
        return None, items, node.get("additionalItems", True)
    return items, [], node.get("additionalItems", True) if items is None else True


def _compare_array(ctx, o, u):
    oall, oitems, oadd = _array_parts(o)
    uall, uitems, uadd = _array_parts(u)
    ctx.path.append("items")
    try:
        _compare(ctx, None if oall is None else o.child(oall), None if uall is None else u.child(uall))
    finally:
        ctx.path.pop()
    uopen, oopen = uadd is True, oadd is True
    for index in range(max(len(oitems), len(uitems))):
        ctx.path += ["items", index]
        try:
            if index < len(oitems) and index < len(uitems):
                _compare(ctx, o.child(oitems[index]), u.child(uitems[index]))
            elif index < len(oitems):
                if uopen:
                    ctx.add("ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL")
                elif isinstance(uadd, dict):
                    _covered(ctx, o.child(oitems[index]), u.child(uadd), "ITEM_REMOVED")
                elif oitems[index] is False:
                    ctx.add("ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL")
                else:
                    ctx.add("ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL")
            else:
                added = u.child(uitems[index])
                if oopen:
                    ctx.add("ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL"
                            if added.kind() == "empty" else "ITEM_ADDED_TO_OPEN_CONTENT_MODEL")
                elif isinstance(oadd, dict):
                    _covered(ctx, o.child(oadd), added, "ITEM_ADDED")
                else:
                    ctx.add("ITEM_ADDED_TO_CLOSED_CONTENT_MODEL")
        finally:
            del ctx.path[-2:]
    _compare_additional(ctx, o, u, oadd, uadd, "additionalItems")
    _limit(ctx, "maxItems", _num(o, "maxItems"), _num(u, "maxItems"), "MAX_ITEMS")
    _limit(ctx, "minItems", _num(o, "minItems"), _num(u, "minItems"), "MIN_ITEMS")
    ou, uu = bool(o.get("uniqueItems")), bool(u.get("uniqueItems"))
    if ou != uu:
        ctx.add("UNIQUE_ITEMS_REMOVED" if ou else "UNIQUE_ITEMS_ADDED", "uniqueItems")


_BY_KIND = {"string": _compare_string, "number": _compare_number, "enum": _compare_enum,
            "not": _compare_not, "combined": _compare_combined, "object": _compare_object,
            "array": _compare_array}
