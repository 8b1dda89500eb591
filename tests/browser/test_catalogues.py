"""The console's message catalogues and assets, checked without a browser: both languages
have the same keys, every key the pages use exists, no page text is hard-coded, and the
vendored ECharts ships with its licence."""

from __future__ import annotations

import json
import re
from pathlib import Path

from qiantang.web.console import ASSET_FOLDERS, WEB_ROOT

CATALOGUES = {
    lang: json.loads((WEB_ROOT / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
    for lang in ("zh-CN", "en")
}
SOURCES = sorted([*WEB_ROOT.glob("js/**/*.js"), WEB_ROOT / "index.html"])
KEY = r"([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+)"
LITERAL_KEYS = [
    rf'\bt\("{KEY}"',
    rf'data-i18n(?:-placeholder)?="{KEY}"',
    rf'\b(?:key|nameKey): "{KEY}"',
    rf'\bsection\("{KEY}"',
    rf'"{KEY}",\n?\s*(?:\(values\)|async \(values\))',
]
DYNAMIC_PREFIX = r"\bt\(`([a-z_.]+)\.\$\{"
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_both_languages_have_the_same_keys() -> None:
    zh, en = CATALOGUES["zh-CN"], CATALOGUES["en"]
    assert sorted(zh) == sorted(en)
    assert len(zh) > 100
    assert all(v.strip() for v in (*zh.values(), *en.values()))
    assert any(CJK.search(v) for v in zh.values())
    assert zh["nav.overview"] != en["nav.overview"]


def test_placeholders_match_between_languages() -> None:
    for key, text in CATALOGUES["zh-CN"].items():
        names = sorted(re.findall(r"\{(\w+)\}", text))
        assert names == sorted(re.findall(r"\{(\w+)\}", CATALOGUES["en"][key])), key


def test_every_key_the_pages_use_exists() -> None:
    used: set[str] = set()
    prefixes: set[str] = set()
    for path in SOURCES:
        text = _text(path)
        for pattern in LITERAL_KEYS:
            used.update(re.findall(pattern, text))
        prefixes.update(re.findall(DYNAMIC_PREFIX, text))
    assert len(used) > 80, "the key scan found too little: the patterns are stale"
    missing = sorted(k for k in used if k not in CATALOGUES["en"])
    assert missing == []
    assert prefixes >= {"kind", "indicator", "severity", "command.status"}
    for prefix in prefixes:
        assert any(k.startswith(prefix + ".") for k in CATALOGUES["en"]), prefix


def test_no_page_text_is_hard_coded_in_chinese() -> None:
    offenders = [
        f"{path.relative_to(WEB_ROOT)}:{n}"
        for path in SOURCES
        for n, line in enumerate(_text(path).splitlines(), 1)
        if CJK.search(line)
    ]
    assert offenders == []


def test_index_refers_only_to_served_local_assets() -> None:
    index = _text(WEB_ROOT / "index.html")
    refs = re.findall(r'(?:src|href)="([^"#]+)"', index)
    assert "/static/vendor/echarts.common.min.js" in refs
    for ref in refs:
        if ref.startswith("data:"):
            continue
        assert ref.startswith("/static/"), ref
        folder, _, rest = ref.removeprefix("/static/").partition("/")
        assert folder in ASSET_FOLDERS and (WEB_ROOT / folder / rest).is_file(), ref


def test_index_preloads_every_module() -> None:
    index = _text(WEB_ROOT / "index.html")
    preloaded = set(re.findall(r'<link rel="modulepreload" href="/static/([^"]+)">', index))
    modules = {str(p.relative_to(WEB_ROOT)) for p in WEB_ROOT.glob("js/**/*.js")}
    assert preloaded == modules


def test_modules_import_only_local_files() -> None:
    for path in WEB_ROOT.glob("js/**/*.js"):
        for target in re.findall(r'^import .* from "([^"]+)";', _text(path), re.M):
            assert target.startswith("."), f"{path.name} imports {target}"
            assert (path.parent / target).resolve().is_file(), f"{path.name}: {target}"
        assert "http://" not in _text(path) and "https://" not in _text(path), path.name


def test_vendored_echarts_carries_its_licence() -> None:
    vendor = WEB_ROOT / "vendor"
    assert "Apache License" in _text(vendor / "ECHARTS-LICENSE.txt")
    assert "Apache ECharts" in _text(vendor / "ECHARTS-NOTICE.txt")
    assert (vendor / "echarts.common.min.js").stat().st_size > 500_000
