"""The documentation site: it builds strictly (a broken reference or link fails), its API
reference names every public name, and a browser shows its front page. Its code blocks
run in ``tests/test_readme.py``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import summary_hook as sh
from summary_hook import huggingface
from tests.conftest import ROOT

MKDOCS = os.path.join(os.path.dirname(sys.executable), "mkdocs")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [MKDOCS, "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_the_site_builds_strictly_with_every_page(site):
    with open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8") as config:
        pages = re.findall(r":\s+(\S+)\.md\s*$", config.read(), re.M)
    for page in pages:
        built = site / ("index.html" if page == "index" else f"{page}/index.html")
        assert built.is_file(), page
    api = (site / "api" / "index.html").read_text()
    for name in [*sh.__all__, *huggingface.__all__]:  # from its docstring, under a heading
        assert re.search(rf'id="summary_hook\.(?:\w+\.)*{re.escape(name)}"', api), name


def test_the_api_reference_lists_every_public_name():
    with open(os.path.join(ROOT, "docs", "api.md"), encoding="utf-8") as page:
        listed = set(re.findall(r"^::: summary_hook\.(?:\w+\.)*(\w+)$", page.read(), re.M))
    public = {*sh.__all__, *huggingface.__all__, "readback"}  # readback: the module
    assert listed == public


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None,
    reason="needs a Chromium to take the screenshot (Debian: apt-get install chromium)",
)
def test_a_browser_shows_the_front_page(site, tmp_path):
    from PIL import Image

    shot = tmp_path / "front.png"
    assert CHROMIUM is not None
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000",
         "--virtual-time-budget=5000", f"--screenshot={shot}",
         (site / "index.html").as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    pixels = np.array(Image.open(shot).convert("RGB")).astype(int)
    header = pixels[:40].reshape(-1, 3)
    indigo = np.array([63, 81, 181])  # the theme's header: the stylesheet was found
    assert (np.abs(header - indigo).sum(axis=1) < 30).mean() > 0.5
    body = pixels[100:].reshape(-1, 3)
    dark = (body.sum(axis=1) < 200).mean()  # text was drawn, not a blank or error page
    assert 0.005 < dark < 0.5, dark
