"""The documentation site: builds with warnings as errors, and its pages open in a real browser with no
broken link or image."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "docs"))

import cli_reference  # noqa: E402
import results_tables  # noqa: E402


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs", reason="the [docs] extra is not installed (pip install '.[docs]')")
    pytest.importorskip("mkdocstrings")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_docs_build_strict_and_generate_their_pages(site):
    cli = (site / "cli.html").read_text()
    assert "robustdml attack" in cli and "--max-queries" in cli and "--threads" in cli
    api = (site / "api.html").read_text()
    assert "evaluate_robustness" in api and "AttackSpec" in api
    assert "Not yet run" in (site / "results.html").read_text() or "<table" in (site / "results.html").read_text()


def test_cli_reference_lists_every_command_and_option():
    from robustdml.cli import build_parser

    text = cli_reference.cli_reference_markdown()
    parser = build_parser()
    commands = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    for name, command in commands.choices.items():
        assert f"## robustdml {name}" in text
        for action in command._actions:
            for flag in action.option_strings:
                assert f"`{flag}`" in text, f"{name} {flag} missing from the CLI reference"


def test_results_page_is_generated_from_results_json(tmp_path):
    (tmp_path / "reports" / "defenses").mkdir(parents=True)
    (tmp_path / "reports" / "defenses" / "results.json").write_text(json.dumps({
        "header": ["run", "benign R@1"], "rows": [["natural", "78.6"], ["EST", "76.2"]],
        "protocol": {"spec": {"attacks": ["auto"], "eps": [0.01, 0.05], "engine": "apgd", "steps": 100,
                              "restarts": 1, "max_queries": 200}}}))
    (tmp_path / "docs" / "results").mkdir(parents=True)
    (tmp_path / "docs" / "results" / "mdprop.json").write_text("{not json")
    text = results_tables.results_markdown(tmp_path)
    assert "| run | benign R@1 |\n| --- | --- |\n| natural | 78.6 |\n| EST | 76.2 |" in text
    assert "eps 0.01, 0.05, 200 attacked queries" in text
    assert "Not yet run here: `robustdml benchmark robrank-fashion`" in text
    assert "mdprop.json could not be read" in text


PROBE = """<!doctype html><html><body><iframe id="page" src="{page}" style="width:1200px;height:900px"></iframe>
<script>
document.getElementById("page").addEventListener("load", () => {{
  const doc = document.getElementById("page").contentDocument;
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({{links: [...doc.querySelectorAll("a[href]")].map(a => a.href),
    images: [...doc.images].map(i => [i.src, i.complete && i.naturalWidth > 0])}});
  document.body.appendChild(out);
}});
</script></body></html>"""


def _open_in_chromium(page: Path) -> dict:
    from robustdml.reporting import browser

    chromium = browser.find_browser()
    if not chromium:
        pytest.skip("chromium not installed, so the docs were not opened in a browser (apt-get install chromium)")
    harness = page.parent / f".probe-{page.stem}.html"
    harness.write_text(PROBE.format(page=page.name))
    try:
        done = subprocess.run([chromium, *browser.FLAGS, "--dump-dom", harness.as_uri()], capture_output=True,
                              text=True, timeout=120)
    finally:
        harness.unlink()
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    if not found:
        pytest.skip(f"chromium did not load the page (rc {done.returncode}): {done.stderr[-300:]}")
    import html

    return json.loads(html.unescape(found.group(1)))


def _ids(page: Path) -> set:
    return set(re.findall(r'\bid="([^"]+)"', page.read_text()))


@pytest.mark.parametrize("name, images", [("index.html", 1), ("getting-started.html", 0)])
def test_pages_open_in_a_browser_with_no_broken_link_or_image(site, name, images):
    seen = _open_in_chromium(site / name)
    assert len(seen["images"]) >= images, f"{name} should show {images} image(s), shows {seen['images']}"
    broken = [src for src, ok in seen["images"] if not ok]
    assert not broken, f"broken images on {name}: {broken}"
    local = [urlparse(link) for link in seen["links"] if link.startswith("file:")]
    assert len(local) > 10, f"{name}: expected the navigation's links, got {seen['links']}"
    for link in local:
        target = Path(unquote(link.path))
        if target.is_dir():
            target = target / "index.html"
        assert target.is_file(), f"{name} links to a missing file: {link.geturl()}"
        if link.fragment and target.suffix == ".html":
            assert unquote(link.fragment) in _ids(target), f"{name} links to a missing anchor: {link.geturl()}"
