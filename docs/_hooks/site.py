"""MkDocs hook: the parts of the qdyn site that come from outside docs/ or from the code.

* every ``docs/*.md`` the nav in ``mkdocs.yml`` does not list is appended to its "Guide" section
  (pages added by anyone appear without editing the nav; listing one there only orders it);
* ``notebooks/*.ipynb`` become a "Notebooks" section (rendered by mkdocs-jupyter);
* ``benchmarks/*.md`` and the plots under ``benchmarks/results/`` are published under
  ``benchmarks/``, so the docs' links to ``../benchmarks/...`` (written to work on GitHub) work
  in the site too: links that leave ``docs/`` for a published folder are rewritten on the fly;
* one API reference page per package of ``qdyn/`` (``::: qdyn.pkg.module`` for each module,
  rendered by mkdocstrings from the docstrings), so a new module needs no edit here.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "qdyn"
# folders outside docs/ published under the same name, and the files of each that are
PUBLISHED = {"benchmarks": ("*.md", "results/*.png"), "notebooks": ("*.ipynb",)}
GUIDE = "Guide"


def _nav_pages(nav) -> set[str]:
    """Every page path the nav mentions (nav entries are str, {title: str} or {title: list})."""
    found: set[str] = set()
    for entry in nav or []:
        values = entry.values() if isinstance(entry, dict) else [entry]
        for value in values:
            if isinstance(value, str):
                found.add(value)
            else:
                found |= _nav_pages(value)
    return found


def _guide_section(nav: list) -> list:
    for entry in nav:
        if isinstance(entry, dict) and GUIDE in entry:
            return entry[GUIDE]
    section: list = []
    nav.append({GUIDE: section})
    return section


def _modules(package_dir: Path) -> list[str]:
    """Dotted names of the public modules directly in one package (its __init__ first)."""
    dotted = ".".join(package_dir.relative_to(REPO).parts)
    names = [dotted] + [f"{dotted}.{p.stem}" for p in sorted(package_dir.glob("*.py"))
                        if not p.stem.startswith("_")]
    return names


def _packages() -> list[Path]:
    """qdyn itself and each sub-package (a folder with an __init__.py)."""
    root = REPO / PACKAGE
    subs = sorted(p.parent for p in root.glob("*/__init__.py") if not p.parent.name.startswith("_"))
    return [root, *subs]


def _api_page(package_dir: Path) -> tuple[str, str]:
    """(src_uri, markdown) of the API page of one package: one mkdocstrings block per module."""
    dotted = ".".join(package_dir.relative_to(REPO).parts)
    blocks = [f"# `{dotted}`\n"]
    package, *modules = _modules(package_dir)
    # the package's __init__: its docstring only (what it re-exports is documented where it is
    # defined, below); sub-packages have their own pages
    blocks.append(f"::: {package}\n    options:\n      members: false\n      show_submodules: false\n")
    blocks += [f"::: {module}\n" for module in modules]
    return f"api/{dotted}.md", "\n".join(blocks)


def on_config(config):
    nav = config.nav
    docs_dir = Path(config.docs_dir)
    listed = _nav_pages(nav)
    unlisted = sorted(str(p.relative_to(docs_dir)) for p in docs_dir.glob("*.md")
                      if str(p.relative_to(docs_dir)) not in listed)
    _guide_section(nav).extend(unlisted)
    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    if notebooks:
        nav.append({"Notebooks": [f"notebooks/{p.name}" for p in notebooks]})
    benchmark_pages = sorted(p.name for p in (REPO / "benchmarks").glob("*.md") if p.name != "README.md")
    nav.append({"Benchmarks": ["benchmarks/README.md", *(f"benchmarks/{name}" for name in benchmark_pages)]})
    nav.append({"API reference": [{f"{PACKAGE}" if p.name == PACKAGE else f"{PACKAGE}.{p.name}":
                                   _api_page(p)[0]} for p in _packages()]})
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, so it wraps the notebooks added here
def on_files(files: Files, config) -> Files:
    for folder, patterns in PUBLISHED.items():
        for pattern in patterns:
            for path in sorted((REPO / folder).glob(pattern)):
                rel = path.relative_to(REPO).as_posix()
                files.append(File(rel, src_dir=str(REPO), dest_dir=config.site_dir,
                                  use_directory_urls=config.use_directory_urls))
    for package_dir in _packages():
        src_uri, markdown = _api_page(package_dir)
        files.append(File.generated(config, src_uri, content=markdown))
    return files




def on_page_markdown(markdown: str, page, config, files) -> str:
    """Rewrite links written for the repository layout to the site layout.

    In the repository docs/ and benchmarks/ are siblings; in the site the docs pages are the root
    and benchmarks/ a folder in it. So from a docs page ``../benchmarks/x`` is ``benchmarks/x``,
    and from a published page ``../docs/x`` is ``../x``.
    """
    src = page.file.src_uri
    top = src.split("/", 1)[0]
    if top in PUBLISHED:
        return re.sub(r"\]\(((?:\.\./)+)docs/", lambda m: f"]({m.group(1)}", markdown)
    depth = src.count("/")  # a docs page at docs/<depth folders>/page.md
    up = "../" * (depth + 1)
    for folder in PUBLISHED:
        markdown = markdown.replace(f"]({up}{folder}/", f"]({'../' * depth}{folder}/")
    return markdown
