"""The pipeline's stage scripts, one per stage of dvc.yaml: `python -m stages.<name>`."""
