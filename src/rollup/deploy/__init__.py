"""Deployment: spark-submit jobs, Prefect deployments and their reports."""
