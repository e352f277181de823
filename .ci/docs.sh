#!/bin/sh
# Build the documentation site (mkdocs build --strict) and check the built pages in
# headless Chromium (tests/test_docs_site.py: the lifecycle SVG names every state,
# the API pages have content, nothing is loaded from the internet).
#
# Usage, from the repository root (as root on a fresh machine, for apt-get):
#     .ci/docs.sh <venv>          e.g. .ci/docs.sh .venv
# Installs chromium and graphviz (dot draws the lifecycle diagram) when missing,
# and the 'docs' and 'test' extras into <venv>.
set -eu
venv=${1:?usage: .ci/docs.sh <venv>}
python="$venv/bin/python"

missing=""
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
    || missing="$missing chromium"
command -v dot >/dev/null 2>&1 || missing="$missing graphviz"
if [ -n "$missing" ]; then
    apt-get update -q
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
fi

"$python" -m pip install -q -e '.[docs,test]'

site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
NO_MKDOCS_2_WARNING=1 "$python" -m mkdocs build --strict -d "$site"
DOCS_SITE="$site" DOCS_REQUIRE_BROWSER=1 \
    "$python" -m pytest -q -p no:cacheprovider tests/test_docs_site.py
