"""Print the largest modules, classes and functions of the package (lines, as in the source).

Usage: ``python scripts/size_report.py [--top N] [PATH]`` (default PATH: ``maskviewer``).
The design notes keep a module under ~500 lines, a class under ~300 and a function under ~60.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def measure(root: Path) -> tuple[list, list, list]:
    """Return ``(modules, classes, functions)``, each a list of ``(lines, name)``."""
    modules, classes, functions = [], [], []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        rel = path.as_posix()
        modules.append((len(text.splitlines()), rel))
        for node in ast.walk(ast.parse(text)):
            size = (node.end_lineno or node.lineno) - node.lineno + 1 if hasattr(node, "lineno") else 0
            if isinstance(node, ast.ClassDef):
                classes.append((size, f"{rel}:{node.name}"))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.append((size, f"{rel}:{node.name}"))
    return modules, classes, functions


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", default="maskviewer")
    ap.add_argument("--top", type=int, default=5)
    args = ap.parse_args(argv)
    for title, rows in zip(("modules", "classes", "functions"), measure(Path(args.path)), strict=True):
        print(f"largest {title}:")
        for size, name in sorted(rows, reverse=True)[: args.top]:
            print(f"  {size:5d}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
