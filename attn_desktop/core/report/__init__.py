"""Self-contained HTML reports of an analysis (docs/report.md). Qt-free."""

from .build import build_report, write_report
from .context import ReportOptions
from .redact import Redaction, parse_redact

__all__ = ["build_report", "write_report", "ReportOptions", "Redaction", "parse_redact"]
