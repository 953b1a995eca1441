"""What the user reads about versions and experiments: tables, comparisons, the HTML report.

Read-only: nothing here writes to the artifact store.
"""
