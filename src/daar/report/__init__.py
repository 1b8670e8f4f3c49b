"""The per-run report: one self-contained report.html (plus figures/*.png) for one or several runs."""

from daar.report.load import ReportError, RunData, load_run
from daar.report.render import write_report, write_report_safely

__all__ = ["ReportError", "RunData", "load_run", "write_report", "write_report_safely"]
