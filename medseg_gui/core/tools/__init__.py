"""Helpers around a run: LR finder, speed benchmark, fit probe, pre-flight checklist, diagnosis, progressive plan."""
