"""Entry points: the pipeline job (``python -m apps.pipeline SPEC``) and, later, the dashboard."""
