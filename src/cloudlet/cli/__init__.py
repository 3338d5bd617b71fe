"""The `cloudlet` command line (Typer + Rich)."""
