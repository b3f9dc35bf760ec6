"""Reporting: tables (Table 4 / 5), output formats, significance tests and plots, read-only on the results
store. Never imports training or cli."""
