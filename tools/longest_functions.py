"""The longest functions and modules of the library, by lines (the package's shape at a glance).

    .venv/bin/python tools/longest_functions.py [--top 10] [--root lib/featurelake]

Prints the N longest functions and methods (first to last line, docstring included) and every
module over the line limit; exits 1 when a module is over it (default 600).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def functions(path: Path) -> list[tuple[int, str]]:
    """(lines, qualified name) of every function and method in one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                found.append((child.end_lineno - child.lineno + 1, name))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--root", default="lib/featurelake")
    parser.add_argument("--max-module-lines", type=int, default=600)
    args = parser.parse_args()
    root = Path(args.root)
    ranked = []
    too_long = []
    for path in sorted(root.rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > args.max_module_lines:
            too_long.append((lines, path))
        ranked += [(n, f"{path.relative_to(root)}:{name}") for n, name in functions(path)]
    print(f"longest functions under {root}:")
    for n, name in sorted(ranked, reverse=True)[: args.top]:
        print(f"  {n:5d}  {name}")
    if too_long:
        print(f"modules over {args.max_module_lines} lines:")
        for n, path in sorted(too_long, reverse=True):
            print(f"  {n:5d}  {path}")
        return 1
    print(f"no module over {args.max_module_lines} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
