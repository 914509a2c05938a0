"""Command-line interface (click): wiring only, no sync logic."""
