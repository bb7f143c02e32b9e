"""The run report (HTML + Markdown)."""
