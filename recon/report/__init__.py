"""Benchmark reports: grouped tables, paired statistics, figures, report.md and report.html."""

from recon.report.tables import GROUP_KEYS, summarize
from recon.report.writers import write_reports

__all__ = ["GROUP_KEYS", "summarize", "write_reports"]
