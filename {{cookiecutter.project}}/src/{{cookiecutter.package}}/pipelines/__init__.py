"""The workflows: their steps (`steps`), declared once (`step_table`), and what engines run
of them (kfp pipelines, command tasks)."""
