"""Confluent's registry converters: a Connect (schema, value) as a record in Confluent's wire
format (magic 0, 4-byte schema id, the payload), the schema registered under
`<topic>-value` / `<topic>-key` (TopicNameStrategy).

    io.confluent.connect.avro.AvroConverter             Avro (fastavro, through embedlog.registry)
    io.confluent.connect.json.JsonSchemaConverter       JSON Schema (draft-07 shape, closed objects)

    value.converter.schema.registry.url = http://host:8081   Confluent's REST API (any registry:
                                                            `embedlog registry serve`, Confluent's)
                                        = file:///path/to/logdir  the in-process registry of that
                                                            log directory (the `_schemas` topic;
                                                            it may be the connectors' own log)
    value.converter.auto.register.schemas = true (default) | false (the schema must be registered)
    value.converter.json.fail.invalid.schema = false (default, as Confluent's) | true: validate each
                                            JSON payload against its schema (jsonschema; ~3x slower)

Connect schemas map as Confluent's AvroData / JsonSchemaData map them, in outline:

    struct                record (name/namespace from the Connect name, "connect.name")
                          | object {"title", "properties", "required", additionalProperties false}
    optional              ["null", T] with default null (a non-null default: [T, "null"])
                          | {"oneOf": [{"type": "null"}, T]}
    int8/int16/int32/64   int (+ "connect.type") / long | integer + "connect.type"
    float / double        float / double | number + "connect.type"
    bytes                 bytes | string (base64) + "connect.type": "bytes"
    Decimal               bytes + logicalType decimal (precision, scale) | number
    array / map           array / map (string keys only) | array / object
    named primitives      the Avro/JSON type with "connect.name" (io.debezium.time.MicroTimestamp ...)

A schema is registered once per (topic, schema) and then cached; a new Connect schema for the
same topic (ALTER TABLE ADD COLUMN) is a new version, checked by the registry against the
subject's compatibility level: an incompatible one fails the task with the registry's
message. Not here: Protobuf, other subject name strategies, basic auth, schema references.
"""
from __future__ import annotations

import base64
import decimal
import json
import struct
import threading
import urllib.error
import urllib.parse
import urllib.request

from ._data import ConnectError

CLASSES = {"io.confluent.connect.avro.AvroConverter": "AVRO",
           "io.confluent.connect.json.JsonSchemaConverter": "JSON"}
SETTINGS = {"schema.registry.url", "auto.register.schemas", "schemas.cache.size", "enhanced.avro.schema.support",
            "connect.meta.data", "json.fail.invalid.schema"}
DECIMAL = "org.apache.kafka.connect.data.Decimal"
_HEADER = struct.Struct(">bI")
_INTS = {"int8": "int", "int16": "int", "int32": "int", "int64": "long"}
_FLOATS = {"float": "float", "float32": "float", "double": "double", "float64": "double"}


# ---- Connect schema -> Avro ------------------------------------------------------------------

def _avro_name(full: str) -> tuple[str, str | None]:
    clean = "".join(c if c.isalnum() or c in "._" else "_" for c in full)
    ns, _, short = clean.rpartition(".")
    if short[:1].isdigit():
        short = "_" + short
    return short, ns or None


def to_avro(schema: dict, named: dict, *, bare: bool = False):
    """The Avro type of a Connect schema (without its optional union unless `bare` is
    False and the schema is optional)."""
    t = schema.get("type")
    name = schema.get("name")
    if t == "struct":
        full = name or "io.confluent.connect.avro.ConnectDefault"
        if full in named:
            node = named[full]
        else:
            short, ns = _avro_name(full)
            named[full] = ((ns + ".") if ns else "") + short
            node = {"type": "record", "name": short}
            if ns:
                node["namespace"] = ns
            if schema.get("doc"):
                node["doc"] = schema["doc"]
            node["fields"] = [_avro_field(f, named) for f in schema.get("fields", ())]
            node["connect.name"] = full
    elif t in _INTS:
        node = {"type": _INTS[t], "connect.type": t} if t in ("int8", "int16") else _INTS[t]
    elif t in _FLOATS:
        node = _FLOATS[t]
    elif t in ("boolean", "string", "bytes"):
        node = t
    elif t == "array":
        node = {"type": "array", "items": to_avro(schema["items"], named)}
    elif t == "map":
        if schema["keys"].get("type") != "string":
            raise ConnectError(f"AvroConverter: a map with {schema['keys'].get('type')} keys is not supported here")
        node = {"type": "map", "values": to_avro(schema["values"], named)}
    else:
        raise ConnectError(f"AvroConverter: unknown Connect schema type {t!r}")
    if name == DECIMAL:
        params = schema.get("parameters") or {}
        node = {"type": "bytes", "logicalType": "decimal", "precision": int(params.get("connect.decimal.precision", 64)),
                "scale": int(params.get("scale", 0)), "connect.name": DECIMAL, "connect.parameters": params}
    elif name and t != "struct":
        node = {"type": node} if isinstance(node, str) else dict(node)
        node["connect.name"] = name
        _connect_meta(node, schema)
    if schema.get("optional") and not bare:
        return [node, "null"] if schema.get("default") is not None else ["null", node]
    return node


def _connect_meta(node: dict, schema: dict) -> None:
    """A named Connect schema's version and parameters, kept as Confluent's converters keep them."""
    if schema.get("version") is not None:
        node["connect.version"] = schema["version"]
    if schema.get("parameters"):
        node["connect.parameters"] = schema["parameters"]


def _avro_field(f: dict, named: dict) -> dict:
    out = {"name": f["field"], "type": to_avro(f, named)}
    if f.get("default") is not None:
        out["default"] = f["default"]
    elif f.get("optional"):
        out["default"] = None
    return out


_AS_IS = object()


def _walk(schema: dict | None, value, leaf):
    """A Connect value rebuilt through structs, arrays and maps, each value first offered to
    leaf(schema, value) (which returns _AS_IS to leave it, or its replacement)."""
    if value is None or schema is None:
        return value
    got = leaf(schema, value)
    if got is not _AS_IS:
        return got
    t = schema.get("type")
    if t == "struct":
        return {f["field"]: _walk(f, value.get(f["field"]), leaf) for f in schema.get("fields", ())}
    if t == "array":
        return [_walk(schema["items"], v, leaf) for v in value]
    if t == "map":
        return {k: _walk(schema["values"], v, leaf) for k, v in value.items()}
    return value


def _decimal(schema: dict, value) -> decimal.Decimal:
    scale = int((schema.get("parameters") or {}).get("scale", 0))
    return decimal.Decimal(int.from_bytes(bytes(value), "big", signed=True)).scaleb(-scale)


def _avro_leaf(schema: dict, value):
    return _decimal(schema, value) if schema.get("name") == DECIMAL else _AS_IS


def avro_value(schema: dict | None, value):
    """A Connect value as fastavro writes it: Decimal's unscaled bytes as decimal.Decimal."""
    return _walk(schema, value, _avro_leaf)


# ---- Connect schema -> JSON Schema -----------------------------------------------------------

def to_json_schema(schema: dict, *, bare: bool = False) -> dict:
    t = schema.get("type")
    name = schema.get("name")
    if t == "struct":
        fields = schema.get("fields", ())
        node = {"type": "object", "properties": {}, "additionalProperties": False}
        for i, f in enumerate(fields):
            node["properties"][f["field"]] = {**to_json_schema(f), "connect.index": i}
        required = [f["field"] for f in fields if not f.get("optional")]
        if required:
            node["required"] = required
    elif t in _INTS:
        node = {"type": "integer", "connect.type": t}
    elif t in _FLOATS:
        node = {"type": "number", "connect.type": "float32" if _FLOATS[t] == "float" else "float64"}
    elif t in ("boolean", "string"):
        node = {"type": t}
    elif t == "bytes":
        node = {"type": "number"} if name == DECIMAL else {"type": "string", "connect.type": "bytes"}
    elif t == "array":
        node = {"type": "array", "items": to_json_schema(schema["items"])}
    elif t == "map":
        if schema["keys"].get("type") != "string":
            raise ConnectError(f"JsonSchemaConverter: a map with {schema['keys'].get('type')} keys is not supported here")
        node = {"type": "object", "connect.type": "map", "additionalProperties": to_json_schema(schema["values"])}
    else:
        raise ConnectError(f"JsonSchemaConverter: unknown Connect schema type {t!r}")
    if name:
        node["title"] = name
        _connect_meta(node, schema)
    if schema.get("default") is not None:
        node["default"] = schema["default"]
    if schema.get("optional") and not bare:
        return {"oneOf": [{"type": "null"}, node]}
    return node


def _json_leaf(schema: dict, value):
    if schema.get("name") == DECIMAL:
        d = _decimal(schema, value)
        return int(d) if d == d.to_integral_value() and not int((schema.get("parameters") or {}).get(
            "scale", 0)) else float(d)
    if schema.get("type") == "bytes":
        return base64.b64encode(bytes(value)).decode("ascii")
    return _AS_IS


def json_value(schema: dict | None, value):
    """A Connect value as JSON: bytes as base64, Decimal as a number (a float past scale 0)."""
    return _walk(schema, value, _json_leaf)


# ---- the registry, over HTTP or in-process ----------------------------------------------------

class _Http:
    def __init__(self, url: str, role: str):
        self.url, self.role = url.rstrip("/"), role

    def _call(self, method: str, path: str, body=None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/vnd.schemaregistry.v1+json",
                                              "Accept": "application/vnd.schemaregistry.v1+json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            try:
                msg = json.loads(e.read()).get("message") or e.reason
            except ValueError:
                msg = e.reason
            raise ConnectError(f"{self.role}.converter: the schema registry at {self.url} answered "
                               f"{e.code}: {msg}") from None
        except (urllib.error.URLError, OSError) as e:
            raise ConnectError(f"{self.role}.converter: cannot reach the schema registry at {self.url}: "
                               f"{getattr(e, 'reason', e)}") from None

    def register(self, subject: str, text: str, schema_type: str, auto: bool) -> int:
        body = {"schema": text} if schema_type == "AVRO" else {"schema": text, "schemaType": schema_type}
        path = "/subjects/" + urllib.parse.quote(subject, safe="")
        return self._call("POST", path + ("/versions" if auto else ""), body)["id"]

    def schema(self, schema_id: int) -> tuple[str, str]:
        doc = self._call("GET", f"/schemas/ids/{schema_id}")
        return doc["schema"], doc.get("schemaType") or "AVRO"


class _Local:
    def __init__(self, path: str, role: str):
        self.path, self.role = path, role
        self._reg = None

    def _registry(self):
        if self._reg is None:
            from ..registry import registry_for
            from ..storage._log import open_log
            try:
                self._reg = registry_for(open_log(self.path))
            except Exception as e:  # noqa: BLE001 - whatever stops the log opening is the message
                raise ConnectError(f"{self.role}.converter: cannot open the registry's log directory "
                                   f"{self.path}: {e}") from None
        return self._reg

    def register(self, subject: str, text: str, schema_type: str, auto: bool) -> int:
        from ..registry import RegistryError
        reg = self._registry()
        try:
            s = reg.register(subject, text, schema_type) if auto else reg.lookup(subject, text, schema_type)
        except RegistryError as e:
            raise ConnectError(f"{self.role}.converter: the schema registry in {self.path} refused the schema "
                               f"for {subject}: {e}") from None
        return s.id

    def schema(self, schema_id: int) -> tuple[str, str]:
        s = self._registry().get_by_id(schema_id)
        return s.schema, s.schema_type


class RegistryConverter:
    """AvroConverter / JsonSchemaConverter (see the module docstring)."""

    def __init__(self, class_name: str, settings: dict[str, str], *, role: str):
        self.format, self.role, self.class_name = CLASSES[class_name], role, class_name
        for k in settings:
            if k not in SETTINGS:
                raise ConnectError(f"unknown setting {role}.converter.{k} for {class_name} (known: "
                                   f"{', '.join(sorted(SETTINGS))})")
        url = settings.get("schema.registry.url")
        if not url:
            raise ConnectError(f"{role}.converter.schema.registry.url is required for {class_name} "
                               f"(http://HOST:PORT, or file:///LOGDIR for the registry in a log directory)")
        auto = str(settings.get("auto.register.schemas", "true")).lower()
        if auto not in ("true", "false"):
            raise ConnectError(f"{role}.converter.auto.register.schemas must be true or false, not {auto!r}")
        self.auto = auto == "true"
        strict = str(settings.get("json.fail.invalid.schema", "false")).lower()
        if strict not in ("true", "false"):
            raise ConnectError(f"{role}.converter.json.fail.invalid.schema must be true or false, not {strict!r}")
        self.validate = self.format == "AVRO" or strict == "true"
        if url.startswith(("http://", "https://")):
            self.client = _Http(url.split(",")[0], role)
        elif url.startswith("file://"):
            self.client = _Local(urllib.parse.unquote(url[len("file://"):]), role)
        else:
            raise ConnectError(f"{role}.converter.schema.registry.url {url!r}: use http(s)://HOST:PORT or "
                               f"file:///LOGDIR")
        self._ids: dict[tuple[str, int], tuple[dict, int, object]] = {}
        self._parsed: dict[int, object] = {}
        self._lock = threading.Lock()

    def _schema_id(self, topic: str, schema: dict):
        hit = self._ids.get((topic, id(schema)))
        if hit is not None and hit[0] is schema:
            return hit[1], hit[2]
        from ..registry import _formats
        # The top level is never a union with null: a null value is a tombstone, no payload.
        tree = to_avro(schema, {}, bare=True) if self.format == "AVRO" else {
            "$schema": "http://json-schema.org/draft-07/schema#", **to_json_schema(schema, bare=True)}
        text = json.dumps(tree, separators=(",", ":"))
        try:
            parsed = _formats.get(self.format).parse(text, {})
        except _formats.SchemaFormatError as e:
            raise ConnectError(f"{self.role}.converter: the {self.format} schema made for {topic} is not valid: "
                               f"{e}") from None
        sid = self.client.register(f"{topic}-{self.role}", text, self.format, self.auto)
        with self._lock:
            self._ids[(topic, id(schema))] = (schema, sid, parsed)
        return sid, parsed

    def from_connect(self, schema: dict | None, value, *, topic: str | None = None) -> bytes | None:
        if value is None:
            return None                               # a tombstone stays one, as Confluent's converters
        if schema is None:
            raise ConnectError(f"{self.class_name} needs a schema for the {self.role} of {topic}")
        if topic is None:
            raise ConnectError(f"{self.class_name}: no topic to name the subject by")
        from ..registry._formats import SerializationError
        sid, parsed = self._schema_id(topic, schema)
        obj = avro_value(schema, value) if self.format == "AVRO" else json_value(schema, value)
        try:
            if not self.validate:         # Confluent's default (json.fail.invalid.schema=false): the
                return _HEADER.pack(0, sid) + json.dumps(   # payload is made from the schema it names
                    obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
            return _HEADER.pack(0, sid) + parsed.encode(obj)
        except (SerializationError, ValueError, TypeError) as e:
            raise ConnectError(f"{self.role}.converter: a {self.role} of {topic} does not match its schema: "
                               f"{e}") from None

    def to_connect(self, data: bytes | None) -> tuple[dict | None, object]:
        """The value decoded with the writer's schema (a sink gets it without a Connect schema)."""
        if data is None:
            return None, None
        from ..registry import _formats
        if len(data) < 5 or data[0] != 0:
            raise ConnectError(f"{self.role} is not in Confluent's wire format (magic byte 0, schema id); set "
                               f"{self.role}.converter for these records")
        sid = _HEADER.unpack_from(data)[1]
        parsed = self._parsed.get(sid)
        if parsed is None:
            text, kind = self.client.schema(sid)
            parsed = self._parsed[sid] = _formats.get(kind).parse(text, {})
        try:
            return None, parsed.decode(bytes(data[5:]))
        except _formats.SerializationError as e:
            raise ConnectError(f"{self.role}: schema id {sid}: {e}") from None
