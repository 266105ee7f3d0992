"""The docs the code cites exist: every "docs/paper.md §N" names a section of docs/paper.md, and every
docs/ page named anywhere in the code, the tests or the top-level docs is in the repository."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*ROOT.glob("irl_core/**/*.py"), *ROOT.glob("app_pages/**/*.py"), *ROOT.glob("tests/*.py"),
           *ROOT.glob("scripts/*"), ROOT / "app.py", ROOT / "README.md", ROOT / "BENCHMARKS.md"]


def _texts():
    for path in SOURCES:
        if path.is_file():
            yield path, path.read_text(encoding="utf-8", errors="replace")


def test_cited_paper_sections_exist():
    headings = [line for line in (ROOT / "docs/paper.md").read_text().splitlines() if line.startswith("#")]
    sections = {m.group(1) for line in headings if (m := re.match(r"#+ (\d+(?:\.\d+)?)\.? ", line))}
    assert {"1.1", "5.2", "9"} <= sections          # the parser reads the headings it should
    cited = {}
    for path, text in _texts():
        for m in re.finditer(r"docs/paper\.md §(\d+(?:\.\d+)?)", text):
            cited.setdefault(m.group(1), path.relative_to(ROOT))
    assert cited, "no citation found: the pattern no longer matches how the code cites the paper"
    missing = {sec: str(where) for sec, where in cited.items() if sec not in sections}
    assert not missing, f"cited sections absent from docs/paper.md: {missing}"


def test_named_docs_pages_exist():
    named = set()
    for _, text in _texts():
        named |= set(re.findall(r"docs/[a-z_]+\.md", text))
    assert {"docs/paper.md", "docs/design.md", "docs/notes.md"} <= named
    assert all((ROOT / page).is_file() for page in named), sorted(p for p in named if not (ROOT / p).is_file())
