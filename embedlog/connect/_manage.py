"""What the CLI and the REST API do to the connectors of a log directory, in Kafka Connect's
JSON shapes (GET /connectors/NAME, /status, /config, /offsets, /connector-plugins and
config validation). Writes go to `_connect_configs`; the worker running a connector (in
this process or another) picks them up.
"""
from __future__ import annotations

import difflib

from .._version import __version__
from . import _configs, _converters, _transforms
from ._data import ConnectError
from ._runner import submit
from ._store import Store


class NotFound(ConnectError):
    """No connector (or plugin) of that name: 404 over REST."""


class Conflict(ConnectError):
    """A connector of that name exists already: 409 over REST."""


class Manager:
    def __init__(self, store: Store):
        self.store = store

    def _raw(self, name: str) -> dict:
        self.store.refresh()
        raw = self.store.configs.get(name)
        if raw is None:
            raise NotFound(f"Connector {name} not found")
        return raw

    def names(self) -> list[str]:
        self.store.refresh()
        return sorted(self.store.configs)

    def info(self, name: str) -> dict:
        raw = self._raw(name)
        return {"name": name, "config": dict(raw), "tasks": [{"connector": name, "task": 0}],
                "type": _configs.plugin_kind(raw.get("connector.class", ""))}

    def config(self, name: str) -> dict:
        return dict(self._raw(name))

    def status(self, name: str) -> dict:
        self._raw(name)
        return self.store.connector_status(name)

    def tasks(self, name: str) -> list[dict]:
        raw = self._raw(name)
        return [{"id": {"connector": name, "task": 0}, "config": dict(raw)}]

    def offsets(self, name: str) -> dict:
        """KIP-875's GET /connectors/NAME/offsets: a source's stored offsets (a sink's are its
        group's, `connect-NAME`, shown by `embedlog groups describe`)."""
        self._raw(name)
        self.store.refresh()
        return {"offsets": [{"partition": p, "offset": o} for p, o in self.store.source_offsets(name).values()]}

    def create(self, config: dict, *, name: str | None = None) -> dict:
        checked = _configs.check(config, name=name)
        self.store.refresh()
        if checked.name in self.store.configs:
            raise Conflict(f"Connector {checked.name} already exists")
        submit(self.store, config, name=name)
        return self.info(checked.name)

    def put_config(self, name: str, config: dict) -> tuple[bool, dict]:
        """PUT /connectors/NAME/config: (created, info)."""
        self.store.refresh()
        created = name not in self.store.configs
        submit(self.store, config, name=name)
        return created, self.info(name)

    def pause(self, name: str):
        self._raw(name)
        self.store.put_target(name, "PAUSED")

    def resume(self, name: str):
        self._raw(name)
        self.store.put_target(name, "STARTED")

    def delete(self, name: str):
        self._raw(name)
        self.store.delete(name)

    def restart(self, name: str):
        """Store the config again: the running worker restarts the connector (a FAILED one
        runs again)."""
        raw = self._raw(name)
        self.store.put_config(name, {**raw})
        self.store.refresh()

    # -- plugins
    @staticmethod
    def plugins() -> list[dict]:
        out = []
        for full in sorted(_configs.PLUGINS):
            kind = _configs.plugin_kind(full)
            if kind != "unknown":
                out.append({"class": full, "type": kind, "version": __version__})
        return out

    @staticmethod
    def validate(class_name: str, config: dict) -> dict:
        """PUT /connector-plugins/CLASS/config/validate: every key with its errors."""
        try:
            full = _configs.resolve_class(class_name)
            cls = _configs.plugin(full)
        except ConnectError as e:
            raise NotFound(str(e)) from None
        raw = {str(k): v if isinstance(v, str) else _configs._text(v) for k, v in (config or {}).items()}
        raw.setdefault("connector.class", full)
        table = {**_configs.COMMON, **(_configs.SOURCE if cls.kind == "source" else _configs.SINK), **cls.CONFIG}
        errors: dict[str, list[str]] = {k: [] for k in table}
        for key in raw:
            if key not in table and key not in _configs.NOOP_KEYS and not key.startswith(_configs._SUB_PREFIXES):
                near = difflib.get_close_matches(key, list(table), n=1)
                errors.setdefault(key, []).append(f"unknown config key{f' (did you mean {near[0]}?)' if near else ''}")
        values = {}
        for key, spec in table.items():
            if key in raw:
                try:
                    values[key] = _configs._typed(key, spec, raw[key])
                except ConnectError as e:
                    errors[key].append(str(e))
            elif spec.required:
                errors[key].append(f"Missing required configuration \"{key}\" which has no default value.")
        for role in ("key", "value"):
            try:
                _converters.converter(raw, role)
            except ConnectError as e:
                errors[f"{role}.converter"].append(str(e))
        try:
            _transforms.transforms(raw)
        except ConnectError as e:
            errors["transforms"].append(str(e))
        if not any(errors.values()):
            try:
                _configs.check(raw)
            except ConnectError as e:
                errors["connector.class"].append(str(e))
        configs = []
        for key, errs in errors.items():
            spec = table.get(key)
            configs.append({
                "definition": {"name": key, "type": (spec.type if spec else "string").upper(),
                               "required": bool(spec and spec.required),
                               "default_value": spec.default if spec else None,
                               "documentation": spec.doc if spec else "", "group": "Common" if key in
                               _configs.COMMON else None, "dependents": []},
                "value": {"name": key, "value": raw.get(key), "recommended_values": [], "errors": errs,
                          "visible": True}})
        return {"name": full, "error_count": sum(len(e) for e in errors.values()), "groups": ["Common"],
                "configs": configs}
