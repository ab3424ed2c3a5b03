"""The layout by subsystem (ARCHITECTURE.md): imports point down only, and no module grows
far past the size STYLE.md asks for. Read from the source with `ast`, so a lazy import
inside a function counts as much as one at the top."""
import ast
import pathlib

import pytest

import embedlog

PKG = pathlib.Path(embedlog.__file__).parent
# What each subsystem may import from embedlog (besides itself); DESIGN.md §2.
ALLOWED = {
    "storage": {"_version"},
    "client": {"_version", "storage"},
    "server": {"_version", "storage", "client"},
    "connect": {"_version", "storage", "client", "registry"},
    "registry": {"_version", "storage", "client"},
    "cli": {"_version", "storage", "client", "server", "connect", "registry", "", "admin", "testing"},
}
# Upward edges allowed, each lazy (inside a function) and for one reason: a topic with
# schema validation on (confluent.*.schema.validation, #15) must be checked by every
# producer, and the registry sits above the clients; the producer loads it only then.
LAZY_UP = {("client/_produce_input.py", "registry")}


def _imports(path: pathlib.Path):
    """The embedlog subpackage (first component after `embedlog.`) of every import in a file;
    "" for `from embedlog import X` / `import embedlog`."""
    rel_pkg = path.relative_to(PKG).parts[:-1]          # ("storage",) for storage/_log.py
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(rel_pkg[:len(rel_pkg) - (node.level - 1)]) if node.level > 1 else list(rel_pkg)
                target = base + (node.module.split(".") if node.module else [])
                if not node.module:    # from . import _x  /  from .. import _x
                    for alias in node.names:
                        yield node.lineno, (target + [alias.name])[0] if target else alias.name
                    continue
                yield node.lineno, target[0] if target else ""
            elif node.module and (node.module == "embedlog" or node.module.startswith("embedlog.")):
                parts = node.module.split(".")[1:]
                yield node.lineno, parts[0] if parts else ""
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "embedlog" or alias.name.startswith("embedlog."):
                    parts = alias.name.split(".")[1:]
                    yield node.lineno, parts[0] if parts else ""


@pytest.mark.parametrize("sub", sorted(ALLOWED))
def test_imports_point_down_only(sub):
    bad = []
    for path in sorted((PKG / sub).rglob("*.py")):
        for lineno, target in _imports(path):
            rel = str(path.relative_to(PKG))
            if target != sub and target not in ALLOWED[sub] and (rel, target) not in LAZY_UP:
                bad.append(f"{path.relative_to(PKG)}:{lineno} imports embedlog.{target}")
    assert not bad, "imports that point up or sideways:\n" + "\n".join(bad)


def test_the_allowed_upward_edges_are_lazy():
    for rel, target in LAZY_UP:
        tree = ast.parse((PKG / rel).read_text())
        top = {n.lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))}
        lines = [line for line, t in _imports(PKG / rel) if t == target]
        assert lines, f"{rel} no longer imports {target}: drop it from LAZY_UP"
        assert not top.intersection(lines), f"{rel} imports {target} at module level"


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """A storage module importing the clients, relatively or absolutely, is found."""
    fake = tmp_path / "embedlog"
    (fake / "storage").mkdir(parents=True)
    (fake / "storage" / "_x.py").write_text(
        "def f():\n    from ..client._admin import consumer_lag\n    import embedlog.cli\n")
    monkeypatch.setattr(f"{__name__}.PKG", fake)
    found = [t for _l, t in _imports(fake / "storage" / "_x.py")]
    assert found == ["client", "cli"]


def test_no_module_much_over_800_lines():
    sizes = {str(p.relative_to(PKG)): len(p.read_text().splitlines()) for p in PKG.rglob("*.py")}
    assert max(sizes.values()) > 100          # the walk found the sources
    over = {name: n for name, n in sizes.items() if n > 900}
    assert not over, over


def test_subpackages_say_what_they_own_and_may_import():
    for sub in ALLOWED:
        doc = ast.get_docstring(ast.parse((PKG / sub / "__init__.py").read_text()))
        assert doc and "import" in doc.lower(), sub
