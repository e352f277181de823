"""MkDocs hooks: README sections in the pages, and the lifecycle diagram as SVG.

Directives (HTML comments, so the Markdown reads fine on GitHub too):

``<!-- readme: Heading -->``
    The README's section under ``## Heading`` (or any level), down to the next
    heading of the same or a higher level, without the heading itself. The
    build fails when the section is missing: pages never go silently empty.
``<!-- readme-or: Heading -->`` ... ``<!-- /readme-or -->``
    The README's section when it exists, else the text in between.
``<!-- file: CHANGELOG.md -->``
    A whole file of the repository, without its first ``#`` heading.
``<!-- diagram: lifecycle.mmd -->``
    A mermaid ``stateDiagram-v2`` of ``docs/`` rendered to an inline SVG at build
    time with graphviz's ``dot``: the site needs no JavaScript and no CDN for it.

Links in included text are made to work from the docs: ``docs/x.md`` becomes
``x.md``; any other file of the repository becomes inline code (the site has no
page for it).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

_README = re.compile(r"<!-- readme: (?P<title>.+?) -->")
_README_OR = re.compile(
    r"<!-- readme-or: (?P<title>.+?) -->\n(?P<fallback>.*?)<!-- /readme-or -->", re.S
)
_FILE = re.compile(r"<!-- file: (?P<path>\S+) -->")
_DIAGRAM = re.compile(r"<!-- diagram: (?P<path>\S+) -->")
_HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$")
_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>[^)\s]+)\)")
_EDGE = re.compile(r"^\s*(?P<src>\[\*\]|\w+)\s*-->\s*(?P<dst>\[\*\]|\w+)\s*(?::\s*(?P<label>.+))?$")


def readme_section(text: str, title: str) -> str | None:
    """The body of the section titled ``title``, or None when there is none."""
    lines = text.splitlines()
    fence = False
    start = level = None
    for index, line in enumerate(lines):
        if line.startswith("```"):
            fence = not fence
        heading = None if fence else _HEADING.match(line)
        if heading is None:
            continue
        if start is None:
            if heading[2].strip() == title:
                start, level = index + 1, len(heading[1])
        elif len(heading[1]) <= (level or 0):
            return _promote("\n".join(lines[start:index]), level or 1)
    if start is None:
        return None
    return _promote("\n".join(lines[start:]), level or 1)


def _promote(body: str, level: int) -> str:
    """Subsections of a level-``level`` section, one level up (``###`` under ``##`` -> ``##``)."""
    out = []
    fence = False
    for line in body.splitlines():
        if line.startswith("```"):
            fence = not fence
        heading = None if fence else _HEADING.match(line)
        if heading is not None:
            line = "#" * max(2, len(heading[1]) - level + 1) + " " + heading[2]
        out.append(line)
    return "\n".join(out).strip() + "\n"


#: Links between README sections, where the site has the section as a page.
_README_ANCHORS = {
    "#robustness": "robustness.md",
    "#testing": "testing.md",
    "#the-local-gateway-server": "local-server.md",
    "#deviant-server-profiles": "local-server.md#deviant-server-profiles",
    "#the-lifecycle": "lifecycle.md",
    "#using-the-core": "core.md",
}


def fix_links(text: str) -> str:
    """Links written for the repository's root, made to work inside the site."""

    def replace(match: re.Match[str]) -> str:
        target = match["target"]
        if target in _README_ANCHORS:  # a README section that is a page of its own here
            return f"[{match['text']}]({_README_ANCHORS[target]})"
        if re.match(r"[a-z]+:|#", target):
            return match[0]
        page, _, anchor = target.partition("#")
        if page.startswith("docs/") and page.endswith(".md"):
            page = page.removeprefix("docs/")
            return f"[{match['text']}]({page}#{anchor})" if anchor else f"[{match['text']}]({page})"
        label = match["text"]
        return label if label.startswith("`") else f"`{target}`" if label == target else label

    return _LINK.sub(replace, text)


def state_diagram_svg(mermaid: str) -> str:
    """A mermaid ``stateDiagram-v2`` as an inline SVG (laid out by graphviz's dot)."""
    dot = shutil.which("dot")
    if dot is None:
        raise PluginError(
            "the lifecycle diagram needs graphviz's dot: apt-get install graphviz "
            "(or run .ci/docs.sh)"
        )
    lines = [
        "digraph lifecycle {",
        '  graph [rankdir=TB, bgcolor="transparent", nodesep=0.3, ranksep=0.4];',
        '  node [shape=box, style="rounded,filled", fillcolor="#e8eaf6", color="#3f51b5",'
        ' fontname="Helvetica", fontsize=14];',
        '  edge [fontname="Helvetica", fontsize=11, color="#5c6bc0", fontcolor="#333333"];',
        '  start [shape=circle, label="", width=0.18, style=filled, fillcolor="#333333"];',
        '  end [shape=doublecircle, label="", width=0.14, style=filled, fillcolor="#333333"];',
    ]
    states: list[str] = []
    edges: dict[tuple[str, str], list[str]] = {}  # (trigger, target) -> sources
    for raw in mermaid.splitlines()[1:]:
        if not raw.strip():
            continue
        edge = _EDGE.match(raw)
        if edge is None:
            raise PluginError(f"unsupported line in the state diagram: {raw!r}")
        src = "start" if edge["src"] == "[*]" else edge["src"]
        dst = "end" if edge["dst"] == "[*]" else edge["dst"]
        for name in (src, dst):
            if name not in ("start", "end") and name not in states:
                states.append(name)
                lines.append(f'  "{name}" [id="state-{name}"];')
        edges.setdefault((edge["label"] or "", dst), []).append(src)
    for index, ((label, dst), sources) in enumerate(edges.items()):
        text = html.escape(label, quote=True)
        if len(sources) < 3:
            lines.extend(f'  "{src}" -> "{dst}" [label="{text}"];' for src in sources)
            continue
        # Many states, one trigger, one target: the arrows meet at a junction first.
        junction = f"j{index}"
        lines.append(f'  {junction} [shape=point, width=0.06, color="#5c6bc0"];')
        lines.extend(f'  "{src}" -> {junction} [arrowhead=none];' for src in sources)
        lines.append(f'  {junction} -> "{dst}" [label="{text}"];')
    lines.append("}")
    result = subprocess.run(
        [dot, "-Tsvg"], input="\n".join(lines), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise PluginError(f"dot failed: {result.stderr.strip()}")
    svg = result.stdout[result.stdout.index("<svg") :]
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    svg = re.sub(
        r'<svg width="[^"]*" height="[^"]*"',
        '<svg class="lifecycle-diagram" role="img" width="100%" style="height:auto"',
        svg,
    )
    svg = svg.replace("<svg ", '<svg aria-label="The lifecycle state diagram" ', 1)
    # A <div> is a raw HTML block to Markdown: kept as it is while it has no blank line.
    body = "\n".join(line for line in svg.splitlines() if line.strip())
    return f'<div class="lifecycle-diagram">\n{body}\n</div>'


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PluginError(f"{path.relative_to(ROOT)} is missing") from exc


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Expand the directives of one page."""
    where = page.file.src_path
    readme = _read(ROOT / "README.md")

    def readme_or(match: re.Match[str]) -> str:
        section = readme_section(readme, match["title"])
        return match["fallback"] if section is None else fix_links(section)

    def include_readme(match: re.Match[str]) -> str:
        section = readme_section(readme, match["title"])
        if section is None:
            raise PluginError(f"{where}: README.md has no section {match['title']!r}")
        return fix_links(section)

    def include_file(match: re.Match[str]) -> str:
        text = _read(ROOT / match["path"])
        return fix_links(re.sub(r"\A# .*\n", "", text))

    def diagram(match: re.Match[str]) -> str:
        return "\n" + state_diagram_svg(_read(DOCS / match["path"])) + "\n"

    markdown = _README_OR.sub(readme_or, markdown)
    markdown = _README.sub(include_readme, markdown)
    markdown = _FILE.sub(include_file, markdown)
    return _DIAGRAM.sub(diagram, markdown)
