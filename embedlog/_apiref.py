"""API.md, the API reference, generated from the public names' signatures and docstrings.

    python -m embedlog._apiref          # rewrites API.md at the top of the source tree

tests/test_typing.py checks that API.md is what this module writes, as tests/test_docs.py
does for CONFIG.md. Signatures are printed from the annotations as written in the source
(every public module has `from __future__ import annotations`, so they are strings and are
not evaluated), so the reference reads like the code and does not depend on the Python
version. A small inspect walk rather than a documentation tool: the output is one Markdown
file in the repository, with no build step and no extra dependency.
"""
from __future__ import annotations

import importlib
import inspect
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

# (heading, [(dotted name as users write it, module, attribute)]), in reading order.
SECTIONS: list[tuple[str, list[tuple[str, str, str]]]] = [
    ("The log directory", [
        ("embedlog.open", "embedlog.storage._log", "open_log"),
        ("embedlog.Log", "embedlog.storage._log", "Log"),
        ("embedlog.Topic", "embedlog.storage._log", "Topic"),
        ("embedlog.Partition", "embedlog.storage._partition", "Partition"),
        ("embedlog.AppendResult", "embedlog.storage._partition", "AppendResult"),
    ]),
    ("Clients (confluent-kafka's API)", [
        ("embedlog.Producer", "embedlog.client._producer", "Producer"),
        ("BatchDelivery", "embedlog.client._produce_input", "BatchDelivery"),
        ("embedlog.Consumer", "embedlog.client._consumer", "Consumer"),
        ("ConsumedBatch", "embedlog.client._fetched", "ConsumedBatch"),
        ("embedlog.AdminClient", "embedlog.client._admin", "AdminClient"),
        ("embedlog.NewTopic", "embedlog.client._admin", "NewTopic"),
        ("embedlog.NewPartitions", "embedlog.client._admin", "NewPartitions"),
        ("embedlog.admin.ConfigResource", "embedlog.client._admin", "ConfigResource"),
        ("embedlog.Message", "embedlog.client._kafka", "Message"),
        ("embedlog.TopicPartition", "embedlog.client._kafka", "TopicPartition"),
        ("embedlog.KafkaError", "embedlog.client._kafka", "KafkaError"),
        ("embedlog.KafkaException", "embedlog.client._kafka", "KafkaException"),
    ]),
    ("asyncio clients", [
        ("embedlog.aio.AIOProducer", "embedlog.aio", "AIOProducer"),
        ("embedlog.aio.AIOConsumer", "embedlog.aio", "AIOConsumer"),
    ]),
    ("Arrow export", [
        ("embedlog.to_arrow", "embedlog._arrow", "to_arrow"),
        ("embedlog._arrow.iter_record_batches", "embedlog._arrow", "iter_record_batches"),
    ]),
    ("Schema registry", [
        ("embedlog.registry", "embedlog.registry", "registry_for"),
        ("embedlog.registry.Registry", "embedlog.registry._registry", "Registry"),
        ("embedlog.registry.Schema", "embedlog.registry._registry", "Schema"),
    ]),
]

HEADER = """# embedlog API reference

Generated from the signatures and docstrings by `python -m embedlog._apiref`; do not edit by
hand (tests/test_typing.py checks it is current). The annotations are the ones mypy checks a
program against (`embedlog` ships `py.typed`). BatchDelivery and ConsumedBatch are not
imported by name: Producer.produce_batch() and Consumer.consume_batch() hand them out.
The exceptions are the names ending in Error in `embedlog.__all__`.
"""


def _annotation(ann: object) -> str:
    if not isinstance(ann, str):
        return inspect.formatannotation(ann)
    # `x: "Log"` under `from __future__ import annotations` is the string "'Log'": the same type
    return ann[1:-1] if len(ann) > 1 and ann[0] == ann[-1] and ann[0] in "'\"" else ann


def signature(fn: Callable[..., object], drop_self: bool = False, returns: bool = True) -> str:
    """`(a: int, *, b: str = 'x') -> bool`, the annotations as written in the source."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return "(...)"
    parts: list[str] = []
    star_done = False
    params = list(sig.parameters.values())
    if drop_self and params and params[0].name in ("self", "cls"):
        params = params[1:]
    for i, p in enumerate(params):
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        if p.kind is p.VAR_POSITIONAL:
            star_done = True
        stars = "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else ""
        text = stars + p.name
        if p.annotation is not p.empty:
            text += f": {_annotation(p.annotation)}"
        if p.default is not p.empty:
            text += f" = {p.default!r}" if p.annotation is not p.empty else f"={p.default!r}"
        parts.append(text)
        if p.kind is p.POSITIONAL_ONLY and (i + 1 == len(params) or params[i + 1].kind is not p.POSITIONAL_ONLY):
            parts.append("/")
    out = f"({', '.join(parts)})"
    if returns and sig.return_annotation is not sig.empty:
        out += f" -> {_annotation(sig.return_annotation)}"
    return out


def _doc(obj: object) -> str:
    doc = obj.__doc__ if isinstance(getattr(obj, "__doc__", None), str) else None
    return inspect.cleandoc(doc) if doc else ""


def _members(cls: type) -> Iterator[tuple[str, Any]]:
    """Public methods and properties defined by embedlog's classes in cls's MRO, by name."""
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        if owner is None or not owner.__module__.startswith("embedlog"):
            continue
        raw = vars(owner)[name]
        if isinstance(raw, (property, staticmethod, classmethod)) or inspect.isfunction(raw):
            yield name, raw


def _entry(dotted: str, obj: Any) -> list[str]:
    if not inspect.isclass(obj):
        lines = [f"### `{dotted}{signature(obj)}`", ""]
        doc = _doc(obj)
        return lines + ([doc, ""] if doc else [])
    init = vars(obj).get("__init__")
    ctor = signature(init, drop_self=True, returns=False) if inspect.isfunction(init) else ""
    lines = [f"### `{dotted}{ctor}`", ""]
    doc = _doc(obj)
    if doc:
        lines += [doc, ""]
    for name, raw in _members(obj):
        if isinstance(raw, property):
            ret = inspect.signature(raw.fget).return_annotation if raw.fget else inspect.Signature.empty
            kind = f": {_annotation(ret)}" if ret is not inspect.Signature.empty else ""
            lines += [f"- `{name}{kind}` (property)"]
            sub = _doc(raw)
        else:
            fn = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
            prefix = "async " if inspect.iscoroutinefunction(fn) else ""
            lines += [f"- `{prefix}{name}{signature(fn, drop_self=not isinstance(raw, staticmethod))}`"]
            sub = _doc(fn)
        if sub:
            lines += ["", *("  " + line if line else "" for line in sub.splitlines())]
        lines.append("")
    return lines


def markdown() -> str:
    """The text of API.md."""
    lines = [HEADER]
    for heading, names in SECTIONS:
        lines += [f"## {heading}", ""]
        for dotted, module, attr in names:
            lines += _entry(dotted, getattr(importlib.import_module(module), attr))
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    path = pathlib.Path(__file__).resolve().parents[1] / "API.md"
    path.write_text(markdown())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
