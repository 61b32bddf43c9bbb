"""The layout rules import-linter's contracts (pyproject.toml) do not state.

The import graph has no cycle, type-only imports included (the contracts leave those
out): a cycle is where a newcomer reading one module must already know the other.

An adapter translates and renders; what a user reads is written once in ``bot/chat/texts.py``
(DESIGN.md: "every user-facing decision ... lives once in the core's conversation
layer"). This test reads the adapters' source for answer sentences so that a new one
written in an adapter fails here, and the ones written there before the rule was checked
are listed (issue 25) so the list can only shrink.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]

# A literal that reads as a sentence to a user: a capital, a space, a full stop.
_SENTENCE = re.compile(r"^[A-Z][^\n]*\s[^\n]*[.!?]$")
# Calls whose sentences go to the operator's log, not to a user.
_LOG_CALL = re.compile(r"(^|\.)(log|logger|bound)\b|\.(debug|info|warning|error|exception)$")

# Answer sentences adapters wrote before issue 25 checked the rule, per module: the
# platform's own failures (files Slack or Discord would not hand over) and form labels.
# Move one into bot/chat/texts.py and lower its count here; never raise a count.
KNOWN_ADAPTER_SENTENCES = {
    "adapters/discord/attachments.py": 1,
    "adapters/discord/cog.py": 1,
    "adapters/discord/components.py": 1,
    "adapters/slack/adapter.py": 3,
    "adapters/slack/files.py": 6,
    "adapters/slack/listeners.py": 1,
    "adapters/slack/views.py": 1,
}


def answer_sentences(path: Path) -> list[str]:
    """The string literals of ``path`` that read as sentences, docstrings and log
    messages left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings: set[int] = set()
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            docstrings.add(id(body[0].value))
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        if id(node) in docstrings or not _SENTENCE.match(node.value.strip()):
            continue
        call = parents.get(id(node))
        while call is not None and not isinstance(call, ast.Call):
            call = parents.get(id(call))
        if call is not None and _LOG_CALL.search(ast.unparse(call.func)):
            continue
        found.append(node.value.strip())
    return found


def test_the_sentence_finder_finds_answers_and_skips_docstrings_and_logs(
    tmp_path: Path,
) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""A module docstring."""\n'
        "def f(log, reply):\n"
        '    """What f does."""\n'
        '    log.info("Something the operator reads.")\n'
        '    reply.tell("Only the person who asked can delete it.")\n'
        '    return "not a sentence"\n'
    )
    assert answer_sentences(sample) == ["Only the person who asked can delete it."]


def test_adapters_write_no_new_answer_sentences() -> None:
    counts = Counter(
        {
            str(path.relative_to(ROOT)): len(answer_sentences(path))
            for path in sorted((ROOT / "adapters").rglob("*.py"))
        }
    )
    counts = +counts  # drop the modules without any
    assert dict(counts) == KNOWN_ADAPTER_SENTENCES, (
        "an adapter writes an answer sentence: put it in bot/chat/texts.py (or, if you moved "
        "one there, lower its count in KNOWN_ADAPTER_SENTENCES)"
    )


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module) & modules:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return groups


def test_the_import_graph_has_no_cycle() -> None:
    graph = grimp.build_graph("bot", "adapters")
    modules = {m for m in graph.modules if m.split(".")[0] in ("bot", "adapters")}
    assert _cycles(graph, modules) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "b", "c"):
        graph.add_module(module)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="a")
    graph.add_import(importer="b", imported="c")
    assert _cycles(graph, {"a", "b", "c"}) == [["a", "b"]]
