"""report.html: one self-contained file (inline CSS, JS and base64 PNGs; no network access).

Sections: settings, grouped summary tables, paired statistics, sortable per-volume rows and the
image panels per acceleration. Clicking a column header of a sortable table sorts its rows
(numerically where every cell is a number), clicking again reverses the order.
"""

from __future__ import annotations

import base64
import html
from typing import Any, Sequence

from recon.report.tables import paired_rows, table_sections
from recon.stats import PairedResult, format_mean_spread, paired_notes

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}h3{font-size:1em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
table.settings td,table.settings th{text-align:left;vertical-align:top}
.note{background:#fff8e0;border-left:4px solid #e0b000;padding:.4em .8em}
.sig{font-weight:bold;color:#0a6}
figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #ddd}
"""

_JS = """
(function(){
  function key(cell){return cell.getAttribute('data-sort')!==null?cell.getAttribute('data-sort'):cell.textContent.trim();}
  document.querySelectorAll('table.sortable').forEach(function(table){
    var heads=table.querySelectorAll('thead th');
    heads.forEach(function(th,col){
      th.addEventListener('click',function(){
        var asc=th.getAttribute('aria-sort')!=='ascending';
        heads.forEach(function(h){h.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort',asc?'ascending':'descending');
        var body=table.tBodies[0];
        var rows=Array.prototype.slice.call(body.rows);
        var numeric=rows.every(function(r){var v=key(r.cells[col]);return v!==''&&!isNaN(Number(v));});
        rows.sort(function(a,b){
          var x=key(a.cells[col]),y=key(b.cells[col]);
          var c=numeric?Number(x)-Number(y):x.localeCompare(y);
          return asc?c:-c;
        });
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "", sort_keys: Sequence[Sequence[Any]] | None = None, table_id: str = "") -> str:
    attrs = (f' class="{cls}"' if cls else "") + (f' id="{table_id}"' if table_id else "")
    out = [f"<table{attrs}><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cells = []
        for j, cell in enumerate(row):
            sk = sort_keys[i][j] if sort_keys is not None else None
            cells.append(f'<td data-sort="{_e(sk)}">{_e(cell)}</td>' if sk is not None else f"<td>{_e(cell)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out) + "</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{data}"><figcaption>{_e(alt)}</figcaption></figure>'


def report_html(
    summary: Sequence[dict[str, Any]],
    rows: Sequence[dict[str, Any]],
    paired: Sequence[PairedResult],
    settings_lines: Sequence[tuple[str, str]],
    figures: dict[str, bytes],
    failed: Sequence[dict[str, str]] = (),
    note: str = "",
    warnings: Sequence[dict[str, str]] = (),
) -> str:
    """The whole report as one HTML string. `figures` maps captions to PNG bytes; `warnings`:
    `{"file", "warning"}` per scored file a method warned about, shown before the tables."""
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             '<link rel="icon" href="data:,">',
             f"<title>Benchmark report</title><style>{_CSS}</style></head><body>",
             "<h1>Benchmark report</h1>"]
    if note:
        parts.append(f'<p class="note">{_e(note)}</p>')
    parts.append("<h2>Settings</h2>" + _table(["setting", "value"], settings_lines, "settings"))
    if failed:
        parts.append("<h2>Failed files</h2>" + _table(["file", "reason"], [(f["file"], f["reason"]) for f in failed]))
    if warnings:
        parts.append("<h2>Warnings</h2>" + _table(["file", "warning"], [(w["file"], w["warning"]) for w in warnings]))
    parts.append("<h2>Summary</h2><p>mean ± 2·std over volumes (std with ddof = 1, as fastMRI's runstats); "
                 "no ± where a group has one volume.</p>")
    for acc, title, group in table_sections(summary):
        body = [(r["method"], r["volumes"], *(format_mean_spread(r[m], r[f"{m}_std"], r["volumes"], d) for m, d in (("ssim", 4), ("psnr", 2), ("nmse", 4))),
                 f"{r['seconds_per_slice']:.3f}") for r in group]
        parts.append(f"<h3>{acc:g}x, {_e(title)}</h3>" + _table(["method", "volumes", "SSIM", "PSNR (dB)", "NMSE", "s/slice"], body))
    if paired:
        prow = paired_rows(paired)
        head = list(prow[0])
        parts.append(f"<h2>Paired differences against {_e(paired[0].reference)}</h2><ul>"
                     + "".join(f"<li>{_e(n)}</li>" for n in paired_notes(paired)) + "</ul>")
        parts.append(_table(head, [[r[h] for h in head] for r in prow], "sortable paired", table_id="paired"))
    vhead = ["file", "method", "acceleration", "acquisition", "coils", "source", "SNR (est.)", "slices", "SSIM", "PSNR (dB)", "NMSE", "s/slice"]
    vrows, vkeys = [], []
    for r in rows:
        vrows.append([r["file"], r["method"], f"{r['acceleration']:g}x", r.get("acquisition"), r.get("coils"), r.get("source"),
                      "-" if r.get("snr") is None else f"{r['snr']:.1f}", r["slices"],
                      f"{r['ssim']:.4f}", f"{r['psnr']:.2f}", f"{r['nmse']:.4f}", f"{r['seconds_per_slice']:.3f}"])
        vkeys.append([None, None, r["acceleration"], None, None, None, None if r.get("snr") is None else repr(r["snr"]), None, repr(r["ssim"]), repr(r["psnr"]), repr(r["nmse"]), repr(r["seconds_per_slice"])])
    parts.append("<h2>Per-volume results</h2><p>Click a column header to sort.</p>"
                 + _table(vhead, vrows, "sortable volumes", vkeys, table_id="volumes"))
    parts.append("<h2>Images</h2>")
    for caption, png in figures.items():
        parts.append(_img(png, caption))
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts)
