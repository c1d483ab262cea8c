"""Every asset of the console is shipped in the package: the vendored files match their
manifest, no page or script names another host, and the Swagger UI and ReDoc files exist."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from plantwire_platform.console import docs, routes

STATIC = routes.static_folder()
TEMPLATES = STATIC.parent / "templates"


def test_vendored_files_match_their_manifest() -> None:
    manifest = json.loads((STATIC / "vendor" / "MANIFEST.json").read_text())
    echarts = manifest["echarts"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", echarts["version"])
    shipped = {
        p.relative_to(STATIC / "vendor").as_posix()
        for p in (STATIC / "vendor").rglob("*")
        if p.is_file() and p.name != "MANIFEST.json"
    }
    assert shipped == set(echarts["files"])
    for name, digest in echarts["files"].items():
        assert hashlib.sha256((STATIC / "vendor" / name).read_bytes()).hexdigest() == digest, name
    assert "LICENSE" in {Path(n).name for n in echarts["files"]}
    head = (STATIC / "vendor" / "echarts" / "echarts.min.js").read_text()[:2000]
    assert "Apache License, Version 2.0" in head


def test_no_page_or_script_of_the_console_names_another_host() -> None:
    ours = [*TEMPLATES.glob("*.html"), *STATIC.glob("*.js"), *STATIC.glob("*.css")]
    assert len(ours) >= 4
    for path in ours:
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", path.read_text()), path


def test_swagger_ui_and_redoc_are_installed() -> None:
    folder = docs.assets_folder()
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"):
        assert (folder / name).stat().st_size > 1000, name
