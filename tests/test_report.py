"""The benchmark over two acquisitions and three methods: grouped tables, paired statistics,
report.md and a self-contained report.html checked in a real headless Chromium (Debian's
`chromium` + `chromium-driver`, driven by Selenium; never a downloaded browser)."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from recon.cli import main

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
METHODS = ["zero-filled", "sense", "cs"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Benchmark of 2 simulated volumes (seed 3200: one CORPDFS_FBK, one CORPD_FBK), 1 slice each."""
    root = tmp_path_factory.mktemp("bench")
    assert main(["simulate", str(root / "data"), "--volumes", "2", "--slices", "1", "--coils", "4", "--preset", "small", "--seed", "3200"]) == 0
    out = root / "out"
    args = ["benchmark", "--data", str(root / "data"), "--methods", ",".join(METHODS), "--accelerations", "4,8",
            "--out", str(out), "--note", "simulated data (test)", "--quiet"]
    assert main(args) == 0
    return out


def test_grouped_tables_and_volume_rows(bench: Path) -> None:
    text = (bench / "results.json").read_text()
    assert "NaN" not in text  # strict JSON
    doc = json.loads(text)
    assert {r["acquisition"] for r in doc["rows"]} == {"CORPD_FBK", "CORPDFS_FBK"}
    assert len(doc["rows"]) == 2 * 3 * 2
    assert all(r["source"] == "simulated" and r["coils"] == 4 for r in doc["rows"])
    groups = {(g["acceleration"], g["group"], g["method"]): g for g in doc["groups"]}
    for acc in (4.0, 8.0):
        for m in METHODS:
            assert groups[(acc, "all", m)]["volumes"] == 2
            for acq in ("CORPD_FBK", "CORPDFS_FBK"):
                one = groups[(acc, acq, m)]
                row = next(r for r in doc["rows"] if r["acceleration"] == acc and r["method"] == m and r["acquisition"] == acq)
                assert one["volumes"] == 1 and one["ssim"] == row["ssim"] and one["ssim_std"] is None
            vals = [r["ssim"] for r in doc["rows"] if r["acceleration"] == acc and r["method"] == m]
            assert groups[(acc, "all", m)]["ssim_std"] == pytest.approx(np.std(vals, ddof=1))
    md = (bench / "report.md").read_text()
    assert "### 4x, acquisition = CORPD_FBK" in md and "### 8x, acquisition = CORPDFS_FBK" in md
    # a one-volume group never shows a spread
    one_volume_rows = [line for line in md.splitlines() if re.match(r"\| (zero-filled|sense|cs) \| 1 \|", line)]
    assert one_volume_rows and not any("±" in line for line in one_volume_rows)
    for name in ("panel_4x.png", "panel_8x.png", "ssim_by_method.png"):
        assert f"]({name})" in md and (bench / name).stat().st_size > 0
    assert "git commit" in md and "torch" in md and "seed from the file name" in md


def test_paired_statistics_by_hand(bench: Path) -> None:
    doc = json.loads((bench / "results.json").read_text())
    rows = {(r["file"], r["acceleration"], r["method"]): r for r in doc["rows"]}
    files = sorted({r["file"] for r in doc["rows"]})
    assert len(doc["paired"]) == 2 * 2 * 2  # methods x accelerations x metrics
    for p in doc["paired"]:
        d = [rows[(f, p["acceleration"], p["method"])][p["metric"]] - rows[(f, p["acceleration"], "zero-filled")][p["metric"]] for f in files]
        assert p["n"] == 2 and p["mean_diff"] == pytest.approx(np.mean(d))
        assert p["improved"] == sum(x > 0 for x in d)
        # n = 2: W+ takes 0, 1, 2, 3 with probability 1/4 each; same signs give p = 2/4, mixed p = 1.
        assert p["p"] == (0.5 if (d[0] > 0) == (d[1] > 0) else 1.0)
        assert p["p_holm"] == min(1.0, max(p["p"], p["p_holm"])) and not p["significant"]
    md = (bench / "report.md").read_text()
    assert "Paired differences against `zero-filled`" in md and "under-covers" in md and "no difference can be significant" in md


def test_reference_must_be_benchmarked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["benchmark", "--data", str(tmp_path), "--methods", "zero-filled", "--reference", "sense", "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 1 and "--reference" in capsys.readouterr().err


def _chrome_options(profile: str):  # noqa: ANN202 - selenium type
    from selenium.webdriver.chrome.options import Options

    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
                 "--disable-extensions", "--window-size=1280,2000", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return opts


def test_snr_bins_split_the_volumes_at_the_median(bench: Path) -> None:
    """Every row carries its volume's estimated SNR; `summarize(by="snr")` puts the volumes below
    and at or above the median apart (the fat-suppressed volume is the noisier one)."""
    from recon.report.tables import snr_bins, summarize

    rows = json.loads((bench / "results.json").read_text())["rows"]
    snr = {r["acquisition"]: r["snr"] for r in rows}
    assert all(isinstance(v, float) and v > 1 for v in snr.values())
    assert snr["CORPDFS_FBK"] < snr["CORPD_FBK"]
    median = float(np.median(list(snr.values())))
    bins = snr_bins(rows)
    by_acq = {r["acquisition"]: bins[r["file"]] for r in rows}
    assert by_acq == {"CORPD_FBK": f"SNR >= median ({median:.1f})", "CORPDFS_FBK": f"SNR < median ({median:.1f})"}
    groups = {(g["acceleration"], g["group"], g["method"]): g for g in summarize(rows, "snr")}
    high = next(r for r in rows if r["acquisition"] == "CORPD_FBK" and r["method"] == "cs" and r["acceleration"] == 8.0)
    assert groups[(8.0, by_acq["CORPD_FBK"], "cs")]["ssim"] == high["ssim"]
    unknown = [{**r, "snr": None} if r["acquisition"] == "CORPD_FBK" else r for r in rows]
    assert set(snr_bins(unknown).values()) == {"SNR unknown", f"SNR >= median ({snr['CORPDFS_FBK']:.1f})"}


def test_report_html_in_chromium(bench: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Debian chromium / chromium-driver not installed (scripts/test installs them with apt-get as root; that install failed or was not possible here)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e .[test])")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download a browser or driver
    page = bench / "report.html"
    html = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html), "report.html refers to the network"
    profile = tempfile.mkdtemp(dir=tmp_path)
    driver = webdriver.Chrome(options=_chrome_options(profile), service=Service(executable_path=CHROMEDRIVER))
    try:
        driver.get(page.as_uri())
        deadline = time.monotonic() + 30
        while driver.execute_script("return document.readyState") != "complete" and time.monotonic() < deadline:
            time.sleep(0.05)
        images = driver.find_elements(By.TAG_NAME, "img")
        assert len(images) == 3
        widths = driver.execute_script("return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        assert all(w > 0 for w in widths), widths

        table = driver.find_element(By.ID, "volumes")
        col = [h.text.strip() for h in table.find_elements(By.CSS_SELECTOR, "thead th")].index("SSIM")

        def column() -> list[float]:
            return [float(r.find_elements(By.TAG_NAME, "td")[col].text) for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]

        before = column()
        assert before != sorted(before)
        header = table.find_elements(By.CSS_SELECTOR, "thead th")[col]
        header.click()
        assert column() == sorted(before)
        header.click()
        assert column() == sorted(before, reverse=True)

        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
        from PIL import Image

        pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
        assert pixels.std() > 5.0, "screenshot is blank"

        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert not errors, errors
        # The page loads nothing but itself and its data: URIs; the browser as a whole makes no
        # network request (chrome:// pages of its own start tab are not network).
        from_page, network = [], []
        for entry in driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg["method"] == "Network.requestWillBeSent":
                url = msg["params"]["request"]["url"]
                if msg["params"].get("documentURL") == page.as_uri() and not url.startswith(("file:", "data:")):
                    from_page.append(url)
                if url.split(":", 1)[0] in ("http", "https", "ws", "wss", "ftp"):
                    network.append(url)
        assert not from_page and not network, (from_page, network)
        assert widths and driver.current_url == page.as_uri()
    finally:
        driver.quit()


def test_summarize_by_coils_and_none() -> None:
    from recon.report import summarize

    rows = [{"file": f"f{i}", "method": "m", "acceleration": 4.0, "coils": c, "source": "simulated", "acquisition": "CORPD_FBK",
             "ssim": s, "psnr": 30.0, "nmse": 0.01, "seconds_per_slice": 0.1}
            for i, (c, s) in enumerate([(8, 0.7), (8, 0.8), (15, 0.9)])]
    by_coils = {r["group"]: r for r in summarize(rows, "coils")}
    assert set(by_coils) == {"all", "8", "15"}
    assert by_coils["8"]["volumes"] == 2 and by_coils["8"]["ssim"] == pytest.approx(0.75)
    assert by_coils["8"]["ssim_std"] == pytest.approx(np.std([0.7, 0.8], ddof=1))
    assert by_coils["15"]["ssim_std"] is None
    assert [r["group"] for r in summarize(rows, None)] == ["all"]
    with pytest.raises(ValueError, match="cannot group by"):
        summarize(rows, "scanner")


def test_duplicate_file_names_are_refused(bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = bench.parent / "data"
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    rc = main(["benchmark", "--data", str(data), str(copy), "--methods", "zero-filled", "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 1 and "names must be unique" in capsys.readouterr().err
