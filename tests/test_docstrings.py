"""Every public name has a docstring that says what it does and what it raises.

The public names are those of `evioloop.__all__` and `evioloop.events.__all__`,
and the public members of the public classes (methods, properties and
attributes not starting with `_`, plus `__init__`, `__len__`, `__call__`,
`__iter__`, `__aenter__` and `__aexit__` where a class defines them). The API
reference (docs/api.md, mkdocstrings) reads them from the sources, where a
`.pyi` stub and its `.py` module are merged: a name is documented when either
file gives it a docstring. The sources read are the installed package's (its
`.py` and `.pyi` files ship in the wheel), parsed, not imported.

"What it raises": an exception that a public function of a `.py` module raises
itself (`raise SomeError(...)` in its own body) is named in its docstring.

`Loop`'s own methods live in loop.py and _core.pyx; the ones without a
docstring at run time are listed in LOOP_UNDOCUMENTED, which must stay exact:
a method that gains a docstring fails the test until it leaves the list.
"""
import ast
import inspect
from pathlib import Path

import pytest

import evioloop
import evioloop.events

PKG = Path(evioloop.__file__).resolve().parent
DUNDERS = {'__init__', '__len__', '__call__', '__iter__', '__aenter__', '__aexit__'}

# Public methods of evioloop.Loop defined by evioloop (loop.py, _core.pyx)
# that have no docstring at run time: help(loop.method) says nothing there.
# (loop.pyi documents Loop.__init__ for the API reference; loop.py does not.)
LOOP_UNDOCUMENTED = frozenset()


def _public_names():
    """(exporting module, name) for every name of both __all__ lists."""
    names = [(evioloop, n) for n in evioloop.__all__]
    names += [(evioloop.events, n) for n in evioloop.events.__all__
              if n not in evioloop.__all__]
    return names


def _files(module_name):
    """The .py and .pyi files of a module of the package, those that exist."""
    rel = module_name.split('.')[1:]
    base = PKG.joinpath(*rel) if rel else PKG / '__init__'
    if base.is_dir():
        base = base / '__init__'
    return [p for p in (base.with_suffix('.py'), base.with_suffix('.pyi')) if p.is_file()]


def _attr_docs(body):
    """{name: docstring or None} of the attributes assigned in a class or module body."""
    out = {}
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = [node.target.id]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        else:
            continue
        nxt = body[i + 1] if i + 1 < len(body) else None
        doc = (nxt.value.value if isinstance(nxt, ast.Expr)
               and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)
               else None)
        for name in names:
            out[name] = doc or out.get(name)
    return out


def _public(name):
    return not name.startswith('_') or name in DUNDERS


class Doc:
    """What the sources say about one public name (merged over .py and .pyi)."""

    def __init__(self):
        self.doc = None             # the name's docstring
        self.members = {}           # member name -> docstring or None
        self.raises = {}            # member name ('' for the name itself) -> {exc names}
        self.found = False

    def add(self, node, in_py):
        self.found = True
        self.doc = self.doc or ast.get_docstring(node)
        if in_py and not isinstance(node, ast.ClassDef):
            self.raises.setdefault('', set()).update(_raised(node))
        if not isinstance(node, ast.ClassDef):
            return
        for member in node.body:
            if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                    and _public(member.name):
                self.members[member.name] = (self.members.get(member.name)
                                             or ast.get_docstring(member))
                if in_py:
                    self.raises.setdefault(member.name, set()).update(_raised(member))
        for attr, doc in _attr_docs(node.body).items():
            if _public(attr):
                self.members[attr] = self.members.get(attr) or doc


def _raised(func):
    """Exception class names a function raises in its own body (not in nested defs)."""
    names = set()
    todo = list(func.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                             ast.Lambda)):
            continue
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = (exc.id if isinstance(exc, ast.Name)
                    else exc.attr if isinstance(exc, ast.Attribute) else None)
            if name and name[0].isupper():      # a class, not a caught exception object
                names.add(name)
        todo.extend(ast.iter_child_nodes(node))
    return names


def _doc_of(exporter, name):
    obj = getattr(exporter, name)
    where = obj.__module__ if inspect.isclass(obj) or inspect.isroutine(obj) \
        else exporter.__name__
    info = Doc()
    for path in _files(where):
        tree = ast.parse(path.read_text(encoding='utf-8'), str(path))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                    and node.name == name:
                info.add(node, path.suffix == '.py')
        attr = _attr_docs(tree.body)
        if name in attr:
            info.found = True
            info.doc = info.doc or attr[name]
    return where, info


PUBLIC = _public_names()


def test_the_public_surface_is_known():
    # the walk below covers what it should: every name of both __all__
    # lists resolves to sources that define it
    assert len(PUBLIC) >= 20, PUBLIC
    unknown = [f'{m.__name__}.{n}' for m, n in PUBLIC if not _doc_of(m, n)[1].found]
    assert not unknown, f'not found in the sources: {unknown}'


@pytest.mark.parametrize('exporter,name', PUBLIC,
                         ids=[f'{m.__name__}.{n}' for m, n in PUBLIC])
def test_public_name_has_docstrings(exporter, name):
    where, info = _doc_of(exporter, name)
    missing = [] if info.doc else [name]
    missing += [f'{name}.{m}' for m, doc in info.members.items()
                if not doc and f'{name}.{m}' not in LOOP_UNDOCUMENTED]
    assert not missing, f'no docstring in {where} (.py or .pyi): {missing}'
    # what a .py function raises itself is named in its docstring
    unsaid = []
    for member, excs in info.raises.items():
        if f'{name}.{member}' in LOOP_UNDOCUMENTED:
            continue
        doc = info.doc if member == '' else info.members.get(member) or ''
        unsaid += [f'{name}{"." + member if member else ""}: {exc}'
                   for exc in sorted(excs) if exc not in doc]
    assert not unsaid, f'raised but not in the docstring: {unsaid}'


def test_loop_methods_have_docstrings():
    # Loop's public methods that evioloop itself defines (loop.py's Loop,
    # _core.pyx's CoreLoop), at run time: what help() shows
    ours = [cls for cls in evioloop.Loop.__mro__ if cls.__module__.startswith('evioloop')]
    assert {c.__name__ for c in ours} >= {'Loop', 'CoreLoop'}, ours
    undocumented = set()
    for cls in ours:
        for name, attr in vars(cls).items():
            if name.startswith('_') and not (name in DUNDERS and inspect.isfunction(attr)):
                continue        # (a compiled class's slot wrappers have a generic doc)
            if not (callable(attr) or isinstance(attr, property)
                    or inspect.isgetsetdescriptor(attr)):
                continue
            if not (getattr(attr, '__doc__', None) or '').strip():
                undocumented.add(f'{cls.__name__}.{name}')
    assert undocumented == LOOP_UNDOCUMENTED, (
        f'newly undocumented: {sorted(undocumented - LOOP_UNDOCUMENTED)}; '
        f'documented now (remove from LOOP_UNDOCUMENTED): '
        f'{sorted(LOOP_UNDOCUMENTED - undocumented)}')


def test_public_classes_have_runtime_docstrings():
    # help(evioloop.Conn) and the like: the class's own docstring at run time
    # (compiled classes keep their .pyx docstring, stubs are not read by help)
    bare = []
    for exporter, name in PUBLIC:
        obj = getattr(exporter, name)
        if inspect.isclass(obj) or inspect.isroutine(obj):
            own = vars(obj).get('__doc__') if inspect.isclass(obj) else obj.__doc__
            if not (own or '').strip():
                bare.append(f'{exporter.__name__}.{name}')
    assert not bare, f'no docstring at run time: {bare}'
