"""The package's layout holds: subpackages import only from those before
them (the order in balle/__init__.py's docstring), no module imports
another in a cycle, no module is over 450 lines, and the registry knows its
families by importing them, never from module-name strings."""

import ast
import pathlib
import re

import balle

PACKAGE = pathlib.Path(balle.__file__).parent
MAX_LINES = 450


def _order():
  """The subpackages (and cli) in the order balle/__init__.py states."""
  text = " ".join(re.findall(r"^\s*(?:<-)?\s*(\w+(?:\s*<-\s*\w+)+)",
                             balle.__doc__, re.MULTILINE))
  return [name.strip() for name in re.split(r"\s*<-\s*|\s+", text) if name]


def _modules():
  """{dotted name: path} of every module of balle/."""
  modules = {}
  for path in sorted(PACKAGE.rglob("*.py")):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    modules[".".join(parts)] = path
  return modules


def _imports(path, modules, top_level_only=False):
  """The balle modules `path` imports (in functions too, unless
  `top_level_only`), resolved to modules where a name is one."""
  tree = ast.parse(path.read_text())
  nodes = tree.body if top_level_only else ast.walk(tree)
  found = set()
  for node in nodes:
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name.startswith("balle"))
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and (
        node.module or "").startswith("balle"):
      for alias in node.names:
        name = f"{node.module}.{alias.name}"
        found.add(name if name in modules else node.module)
  return found


def _subpackage(module):
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else None


def test_the_order_names_every_subpackage():
  order = _order()
  assert order[0] == "io" and order[-1] == "cli"
  subpackages = {_subpackage(m) for m in _modules()} - {None}
  assert set(order) == subpackages


def test_subpackages_import_only_earlier_ones():
  order = _order()
  modules = _modules()
  wrong = []
  for module, path in modules.items():
    importer = _subpackage(module)
    if importer is None:
      continue
    for target in _imports(path, modules):
      imported = _subpackage(target)
      if imported and order.index(imported) > order.index(importer):
        wrong.append(f"{module} imports {target}")
  assert not wrong, wrong


def test_no_import_cycle_between_modules():
  modules = _modules()
  graph = {m: _imports(p, modules, top_level_only=True) - {m}
           for m, p in modules.items()}
  # A package's __init__ imports its own modules to re-export them; those
  # may import the package's other modules through it.
  for module in graph:
    graph[module] = {t for t in graph[module]
                     if not module.startswith(t + ".")}
  done, active, cycles = set(), [], []

  def visit(module):
    if module in active:
      cycles.append(active[active.index(module):] + [module])
      return
    if module in done:
      return
    active.append(module)
    for target in sorted(graph.get(module, ())):
      visit(target)
    active.pop()
    done.add(module)

  for module in sorted(graph):
    visit(module)
  assert not cycles, cycles


def test_no_module_is_longer_than_the_limit():
  long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
          if (n := len(p.read_text().splitlines())) > MAX_LINES}
  assert not long, long


def test_the_registry_imports_its_families():
  for path in PACKAGE.rglob("*.py"):
    assert "importlib" not in path.read_text(), path
  import balle.models  # pylint: disable=import-outside-toplevel
  for architecture in ("bls2017", "bmshj2018"):
    model = balle.models.model_class(architecture)
    assert model.__module__ == f"balle.models.{architecture}"
