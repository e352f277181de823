"""The documentation site: ``mkdocs build --strict``, then the pages in headless Chromium.

Needs the ``docs`` extra, graphviz's ``dot`` and Chromium (``.ci/docs.sh`` installs
all three). Without them the tests skip, unless ``DOCS_REQUIRE_BROWSER=1`` (set by
``.ci/docs.sh``) makes a missing tool a failure. ``DOCS_SITE=<dir>`` checks a site
already built there instead of building one.
"""

from __future__ import annotations

import functools
import html
import http.server
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from discord_gateway import DiscordConnection
from discord_gateway.fsm import State

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
)
REQUIRED = os.environ.get("DOCS_REQUIRE_BROWSER") == "1"


def _need(ok: bool, what: str) -> None:
    if not ok:
        if REQUIRED:
            pytest.fail(f"{what} is missing (DOCS_REQUIRE_BROWSER=1)")
        pytest.skip(f"{what} is missing (.ci/docs.sh installs it)")


@pytest.fixture(scope="module")
def site() -> Iterator[Path]:
    """The built site: $DOCS_SITE, or a fresh ``mkdocs build --strict``."""
    if os.environ.get("DOCS_SITE"):
        yield Path(os.environ["DOCS_SITE"])
        return
    _need(importlib.util.find_spec("mkdocs") is not None, "mkdocs (pip install -e '.[docs]')")
    _need(shutil.which("dot") is not None, "graphviz's dot (apt-get install graphviz)")
    with tempfile.TemporaryDirectory() as out:
        # Not -q: with it, mkdocs 1.6 hides the warnings that --strict turns into failures.
        build = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", out],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
            timeout=300,
            check=False,
        )
        assert build.returncode == 0, build.stdout + build.stderr
        yield Path(out)


@pytest.fixture(scope="module")
def base_url(site: Path) -> Iterator[str]:
    """The site served on 127.0.0.1, as a reader would open it."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def dump_dom(url: str) -> str:
    """The page's DOM after its scripts ran, in headless Chromium with no internet.

    Every host but 127.0.0.1 fails to resolve: what the page shows, it shows offline.
    """
    _need(CHROMIUM is not None, "chromium (apt-get install chromium)")
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--virtual-time-budget=5000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_lifecycle_page_draws_every_state_as_svg(base_url: str) -> None:
    dom = dump_dom(f"{base_url}/lifecycle/")
    found = re.search(r'<svg[^>]*class="lifecycle-diagram".*?</svg>', dom, re.S)
    assert found, "no lifecycle SVG on the page"
    svg = found[0]
    labels = set(re.findall(r"<text[^>]*>([^<]+)</text>", svg))
    for state in State:
        assert state.value in labels, f"{state.value} is not drawn"
    assert "hello_received" in labels  # the arrows are labelled with their triggers


def test_api_pages_document_the_public_api(base_url: str) -> None:
    dom = dump_dom(f"{base_url}/api/connection/")
    assert 'id="discord_gateway.connection.DiscordConnection.receive"' in dom
    doc = DiscordConnection.receive.__doc__
    assert doc is not None
    first_line = doc.strip().splitlines()[0]
    assert " ".join(first_line.split()[:6]) in " ".join(_text(dom).split())
    doms: dict[str, str] = {}
    for page, name in [
        ("events", "discord_gateway.events.Disconnected"),
        ("errors", "discord_gateway.errors.AuthenticationFailed"),
        ("adapters", "discord_gateway.adapters.asyncio.Shard"),
        ("adapters", "discord_gateway.adapters.threading.Shard"),
        ("adapters", "discord_gateway.adapters.trio.Shard"),
        ("adapters", "discord_gateway.adapters.manager.ShardManager"),
        ("sharding", "discord_gateway.sharding.IdentifyScheduler"),
        ("commands", "discord_gateway.commands.identify_data"),
        ("testing", "discord_gateway.testing.serve"),
    ]:
        if page not in doms:
            doms[page] = dump_dom(f"{base_url}/api/{page}/")
        assert f'id="{name}"' in doms[page], f"{name} is not documented on api/{page}"


def test_pages_from_the_readme_have_content(site: Path) -> None:
    for page, expected in [
        ("quickstart", "python -m discord_gateway demo"),
        ("adapters", "ShardManager"),
        ("migrating", "0.4.0"),
        ("changelog", "1.0.0.dev0"),
        ("protocol", "Zombie"),
    ]:
        text = _text((site / page / "index.html").read_text(encoding="utf-8"))
        assert expected.lower() in text.lower(), f"{page}: {expected!r} missing"


def test_site_loads_nothing_from_the_internet(site: Path) -> None:
    # Links to Discord's documentation are fine; what a page *loads* must be local.
    remote = re.compile(
        r"<(?:script|img|iframe)[^>]+src=\"(?:https?:)?//|"
        r"<link[^>]+href=\"(?:https?:)?//[^\"]+\"[^>]*rel=\"(?:stylesheet|preload|preconnect)|"
        r"<link[^>]+rel=\"(?:stylesheet|preload|preconnect)\"[^>]+href=\"(?:https?:)?//|"
        r"@import url\((?:https?:)?//|fonts\.googleapis|fonts\.gstatic|unpkg\.com|jsdelivr"
    )
    pages = list(site.rglob("*.html")) + list(site.rglob("*.css"))
    assert pages
    offenders = [str(p.relative_to(site)) for p in pages if remote.search(p.read_text("utf-8"))]
    assert offenders == []


def test_hook_sections_and_links() -> None:
    _need(importlib.util.find_spec("mkdocs") is not None, "mkdocs (pip install -e '.[docs]')")
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs/_hooks.py")
    assert spec is not None and spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    readme = "# T\n\n## A\n\nbody\n\n### Sub\n\nmore\n```sh\n# not a heading\n```\n## B\n\nlast\n"
    assert hooks.readme_section(readme, "A") == (
        "body\n\n## Sub\n\nmore\n```sh\n# not a heading\n```\n"
    )
    assert hooks.readme_section(readme, "B") == "last\n"
    assert hooks.readme_section(readme, "C") is None
    assert hooks.fix_links("[guide](docs/testing.md), [LICENSE](LICENSE), [x](https://a.b)") == (
        "[guide](testing.md), `LICENSE`, [x](https://a.b)"
    )
    assert hooks.fix_links("[`a.py`](discord_gateway/a.py)") == "`a.py`"
    # README sections that are pages of their own on the site, and anchors into docs/.
    assert hooks.fix_links("see [Robustness](#robustness), [x](#elsewhere)") == (
        "see [Robustness](robustness.md), [x](#elsewhere)"
    )
    assert hooks.fix_links("[f](docs/testing.md#byte-level-fuzzing)") == (
        "[f](testing.md#byte-level-fuzzing)"
    )
