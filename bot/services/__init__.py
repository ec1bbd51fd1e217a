"""Domain rules: each function that changes state runs in one transaction."""
