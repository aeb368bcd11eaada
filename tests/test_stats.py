"""Paired statistics checked against answers derived by hand (not against a statistics library)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from recon.stats import (
    bootstrap_ci,
    format_mean_spread,
    holm,
    paired_comparisons,
    paired_notes,
    wilcoxon_signed_rank_exact,
)


def test_wilcoxon_six_all_positive_is_two_over_64() -> None:
    # Only 1 of the 2^6 sign patterns reaches W+ = 21; two-sided doubles it: 2/64.
    w, p, n = wilcoxon_signed_rank_exact([0.3, 0.1, 0.6, 0.2, 0.5, 0.4])
    assert (w, n) == (21.0, 6)
    assert p == 0.03125


def test_wilcoxon_smallest_negative() -> None:
    # W+ = 20: patterns with W+ >= 20 are {all +} and {rank 1 flipped}: 2/64, two-sided 4/64.
    w, p, n = wilcoxon_signed_rank_exact([-0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert (w, n) == (20.0, 6)
    assert p == 0.0625


def test_wilcoxon_drops_zeros_and_handles_ties() -> None:
    assert wilcoxon_signed_rank_exact([0.0, 1, 2, 3, 4, 5, 6])[1:] == (0.03125, 6)
    # |d| = 1, 2, 2, 3 -> ranks 1, 2.5, 2.5, 4; W+ = 6 of total 10. Of the 16 subsets of the
    # ranks only {1, 4} and {2.5, 2.5} sum to 5 (closer to the mean than 6), so p = 14/16.
    w, p, n = wilcoxon_signed_rank_exact([1, 2, 2, -3])
    assert (w, n) == (6.0, 4)
    assert p == pytest.approx(14 / 16, abs=1e-15)
    assert wilcoxon_signed_rank_exact([0.0, 0.0]) == (0.0, 1.0, 0)


def test_wilcoxon_matches_enumeration_of_signs() -> None:
    rng = np.random.default_rng(0)
    d = rng.normal(0.3, 1.0, 9)
    ranks = np.argsort(np.argsort(np.abs(d))) + 1
    w_obs = ranks[d > 0].sum()
    total = ranks.sum()
    hits = sum(abs(sum(r for r, s in zip(ranks, signs) if s) - total / 2) >= abs(w_obs - total / 2)
               for signs in itertools.product([0, 1], repeat=d.size))
    assert wilcoxon_signed_rank_exact(d)[1] == pytest.approx(hits / 2**d.size, abs=1e-12)


def test_bootstrap_constant_shift_is_degenerate_and_covers_mean() -> None:
    assert bootstrap_ci([0.01] * 6) == (0.01, 0.01)
    assert bootstrap_ci([0.5]) == (0.5, 0.5)
    low, high = bootstrap_ci([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert 0.0 <= low < 2.5 < high <= 5.0
    assert bootstrap_ci([0.0, 1.0, 2.0, 3.0]) == bootstrap_ci([0.0, 1.0, 2.0, 3.0])


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def _rows(shift: float, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        base = 0.6 + 0.01 * i
        rows.append({"file": f"f{i}.h5", "method": "zero-filled", "acceleration": 4.0, "ssim": base, "psnr": 30.0 + i})
        rows.append({"file": f"f{i}.h5", "method": "better", "acceleration": 4.0, "ssim": base + shift, "psnr": 30.0 + i + 1})
    return rows


def test_paired_comparisons_constant_shift() -> None:
    res = paired_comparisons(_rows(0.01, 6), reference="zero-filled")
    assert [(r.method, r.metric) for r in res] == [("better", "ssim"), ("better", "psnr")]
    ssim, psnr = res
    assert ssim.n == 6 and ssim.improved == 6 and ssim.p == 0.03125
    assert ssim.mean_diff == pytest.approx(0.01)
    assert ssim.ci_low == pytest.approx(0.01) and ssim.ci_high == pytest.approx(0.01)
    assert psnr.ci_low == psnr.ci_high == 1.0
    # Holm over two comparisons with equal p: both become 0.0625, not significant.
    assert ssim.p_holm == psnr.p_holm == 0.0625
    assert not ssim.significant and ssim.mark == ""
    notes = " ".join(paired_notes(res))
    assert "under-covers" in notes


def test_paired_comparisons_few_volumes_say_so() -> None:
    res = paired_comparisons(_rows(0.01, 3), reference="zero-filled", metrics=("ssim",))
    assert res[0].p == 0.25
    assert "no difference can be significant" in " ".join(paired_notes(res))


def test_paired_skips_unpaired_volumes() -> None:
    rows = _rows(0.01, 6)[:-1]
    assert paired_comparisons(rows, reference="zero-filled", metrics=("ssim",))[0].n == 5


def test_no_plus_minus_from_one_sample() -> None:
    assert format_mean_spread(0.5, float("nan"), 1) == "0.5000"
    assert format_mean_spread(0.5, 0.01, 3) == "0.5000 ± 0.0200"


def test_paired_refuses_duplicate_file_names() -> None:
    rows = _rows(0.01, 2)
    with pytest.raises(ValueError, match="unique file names"):
        paired_comparisons(rows + rows[:1], reference="zero-filled")


def test_note_when_holm_makes_significance_impossible() -> None:
    # n = 6: floor 2/64 = 0.03125; two comparisons -> smallest Holm p 0.0625; n = 7 gives 2 * 2/128 = 0.03125.
    notes = " ".join(paired_notes(paired_comparisons(_rows(0.01, 6), reference="zero-filled")))
    assert "smallest possible Holm-adjusted p is 0.0625" in notes and "7 volumes would be needed" in notes
    assert "Holm-adjusted p is" not in " ".join(paired_notes(paired_comparisons(_rows(0.01, 6), "zero-filled", metrics=("ssim",))))
