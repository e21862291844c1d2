"""No string built at run time reaches a widget that would parse it as markup.

Textual reads a plain `str` given to `Static`, `Label`, `update`, a border title, a table cell, a tree
label or an option as markup, so a subject like `[@click=app.quit]` would become an action. Every such
place in `commune_tui` must get a literal, `Text`/`Content` (e.g. from `display.line`/`plain`), or
`markup=False`.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import commune_tui

PACKAGE = Path(commune_tui.__file__).parent

# Widgets and calls whose text argument Textual parses as markup, with where that argument sits.
TEXT_CALLS = {"Static": (0,), "Label": (0,), "Button": (0,), "Option": (0,), "notify": (0,),
              "set_label": (0,), "add_leaf": (0,), "add_column": (0,), "update_cell": (2,)}
ALL_ARGS_CALLS = {"add_row", "add_columns"}
TEXT_KEYWORDS = {"content", "label", "prompt", "message", "title", "tooltip", "value"}
TEXT_ATTRIBUTES = {"border_title", "border_subtitle", "tooltip"}
# Textual shows these str arguments literally (notify's title, screen titles go through format_title).
LITERAL_KEYWORDS = {"notify": {"title"}}
SAFE_CONSTRUCTORS = {"Text", "Content"}
CONTAINERS = {"list", "tuple", "None"}


@cache
def text_builders(package: Path) -> frozenset[str]:
    """Names whose results are not markup: Text, Content, the package's classes with `__rich__`, and
    the package's functions annotated to return only those (or lists of them)."""
    trees = [ast.parse(path.read_text()) for path in package.rglob("*.py")]
    renderables = set(SAFE_CONSTRUCTORS)
    for tree in trees:
        renderables |= {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                        and any(getattr(item, "name", "") == "__rich__" for item in node.body)}
    builders = set(renderables)
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
                names = {n.id for n in ast.walk(node.returns) if isinstance(n, ast.Name)} - CONTAINERS
                if names and names <= renderables:
                    builders.add(node.name)
    return frozenset(builders)


def call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


class MarkupSinks(ast.NodeVisitor):
    """Collects every place a run-time str reaches a markup-parsing argument."""

    def __init__(self, source: str, builders: frozenset[str], path: str) -> None:
        self.builders = builders
        self.path = path
        self.found: list[str] = []
        self.assigned: list[dict[str, list[ast.expr]]] = [{}]
        self.imports_textual = "textual" in source
        self.visit(ast.parse(source))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if node.name == "notify":
            return  # the app's override passes on what its callers chose, and they are checked
        names: dict[str, list[ast.expr]] = {}
        for child in ast.walk(node):
            if isinstance(child, ast.Assign):
                for target in child.targets:
                    if isinstance(target, ast.Name):
                        names.setdefault(target.id, []).append(child.value)
            elif isinstance(child, ast.For):
                # `for column, cell in zip(COLUMNS, self._cells(thread))`: judged by what is iterated.
                for target in ast.walk(child.target):
                    if isinstance(target, ast.Name):
                        names.setdefault(target.id, []).append(child.iter)
        self.assigned.append(names)
        self.generic_visit(node)
        self.assigned.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def safe(self, node: ast.expr, depth: int = 0) -> bool:
        """A literal, Text/Content, or a name only ever bound to those."""
        if isinstance(node, ast.Constant):
            return True
        if isinstance(node, ast.IfExp):
            return self.safe(node.body, depth) and self.safe(node.orelse, depth)
        if isinstance(node, ast.Starred | ast.Subscript):
            return self.safe(node.value, depth)
        if isinstance(node, ast.Call):
            if call_name(node) == "zip":
                return any(self.safe(arg, depth) for arg in node.args)
            return call_name(node) in self.builders
        if isinstance(node, ast.Name) and depth < 5:
            values = self.assigned[-1].get(node.id)
            return bool(values) and all(self.safe(v, depth + 1) for v in values)
        return False

    def report(self, node: ast.AST, what: str) -> None:
        self.found.append(f"{self.path}:{node.lineno}: {what}: {ast.unparse(node)[:90]}")

    def visit_Call(self, node: ast.Call) -> None:
        name = call_name(node)
        markup_off = any(k.arg == "markup" and isinstance(k.value, ast.Constant) and k.value.value is False
                         for k in node.keywords)
        if name in ("from_markup",) or any(k.arg == "markup" and not markup_off for k in node.keywords):
            self.report(node, "markup turned on")
        texts: list[ast.expr] = []
        if name in TEXT_CALLS or (name == "update" and self.imports_textual and len(node.args) == 1):
            texts += [node.args[i] for i in TEXT_CALLS.get(name, (0,)) if i < len(node.args)]
        if name in ALL_ARGS_CALLS:
            texts += list(node.args)
        literal = LITERAL_KEYWORDS.get(name, set())
        if name in TEXT_CALLS or name in ALL_ARGS_CALLS or name == "update":
            texts += [k.value for k in node.keywords if k.arg in TEXT_KEYWORDS - literal]
        else:
            texts += [k.value for k in node.keywords if k.arg == "title"]
        if name == "Select" and node.args:
            texts += self.option_prompts(node.args[0])
        if not markup_off:
            for text in texts:
                if not self.safe(text):
                    self.report(node, f"run-time text given to {name}() as markup")
        self.generic_visit(node)

    def option_prompts(self, options: ast.expr) -> list[ast.expr]:
        """The prompts of a `Select`'s (prompt, value) options, where they can be seen."""
        sources = self.assigned[-1].get(options.id, []) if isinstance(options, ast.Name) else [options]
        prompts: list[ast.expr] = []
        for source in sources:
            items = [source.elt] if isinstance(source, ast.ListComp) else getattr(source, "elts", [])
            prompts += [item.elts[0] for item in items if isinstance(item, ast.Tuple)]
        return prompts

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            if isinstance(target, ast.Attribute) and target.attr in TEXT_ATTRIBUTES and not self.safe(node.value):
                self.report(node, f"run-time text assigned to {target.attr} as markup")
        self.generic_visit(node)


def markup_sinks(source: str, path: str = "<snippet>") -> list[str]:
    return MarkupSinks(source, text_builders(PACKAGE), path).found


def test_no_run_time_text_reaches_a_markup_sink_in_the_client() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += markup_sinks(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert found == [], "wrap these in display.line/plain, or pass markup=False:\n" + "\n".join(found)


def test_the_check_catches_the_patterns_that_let_mail_run_actions() -> None:
    bad = '''
from textual.widgets import Static, Label
def show(self, thread, name, status):
    self.notify(f"New mail: {thread.subject}")
    self.notify(thread.subject, severity="error")
    yield Static(f"From {thread.sender}")
    yield Label(name)
    status.update(f"Searching for {name}")
    self.query_one("#reader").border_title = f"Message from {name}"
    table.add_row(name, "ok")
    yield Collapsible(title=f"{name} wrote")
    yield Select([(i.address, i.id) for i in inboxes])
    self.notify(name, markup=True)
'''
    flagged = {int(finding.split(":")[1]) for finding in markup_sinks(bad)}
    assert flagged == set(range(4, 14))  # every line of `show`
    good = '''
from textual.widgets import Static
def show(self, thread, name, status):
    self.notify(f"New mail: {thread.subject}", markup=False)
    yield Static(line(f"From {thread.sender}"))
    yield Static("A literal [b]we[/b] wrote")
    label = Text(name)
    yield Static(label)
    status.update(plain(name))
    yield Collapsible(title=line(name))
'''
    assert markup_sinks(good) == []
