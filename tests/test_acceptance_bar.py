"""benchmarks/acceptance_bar.py: issue 21's bar from `recon benchmark` groups."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import acceptance_bar  # noqa: E402


def _group(method: str, ssim: float, group: str = "all", acceleration: float = 4.0) -> dict:
    return {"acceleration": acceleration, "group": group, "by": None, "method": method, "volumes": 3, "ssim": ssim}


def _results(**ssims: float) -> dict:
    return {"groups": [_group(m.replace("_", "-"), s) for m, s in ssims.items()]}


def test_bar_is_the_larger_of_the_two_margins() -> None:
    (row,) = acceptance_bar.bar_rows("phantom", _results(zero_filled=0.70, cs=0.78, cs_tv=0.79, varnet=0.83))
    assert row.best_classical == "cs-tv"
    assert row.bar == pytest.approx(0.82)
    assert row.margin == pytest.approx(0.01)
    (row,) = acceptance_bar.bar_rows("phantom", _results(zero_filled=0.76, cs=0.77, varnet=0.80))
    assert row.bar == pytest.approx(0.81)
    assert row.margin == pytest.approx(-0.01)


def test_each_group_and_acceleration_is_checked_separately() -> None:
    results = {"groups": [_group(m, s, g, a) for a in (4.0, 8.0) for g in ("all", "SNR < median (9.0)") for m, s in (("zero-filled", 0.6), ("cs", 0.7), ("varnet", 0.75 if g == "all" else 0.72))]}
    rows = acceptance_bar.bar_rows("template", results)
    assert len(rows) == 4
    assert sorted(round(r.margin, 4) for r in rows) == [-0.01, -0.01, 0.02, 0.02]
    assert "| no |" in acceptance_bar.markdown(rows)


def test_a_group_without_the_learned_method_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="varnet"):
        acceptance_bar.bar_rows("phantom", _results(zero_filled=0.7, cs=0.8))
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results(zero_filled=0.7, cs=0.8)))
    assert acceptance_bar.main([f"phantom={path}"]) == 2


def test_writes_json_and_markdown(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results(zero_filled=0.70, cs=0.78, varnet=0.83)))
    assert acceptance_bar.main([f"phantom={path}", "--out", str(tmp_path / "bar")]) == 0
    payload = json.loads((tmp_path / "bar.json").read_text())
    assert payload["rows"][0]["margin"] == pytest.approx(0.02)
    assert "| phantom | 4x | all | 3 |" in (tmp_path / "bar.md").read_text()
