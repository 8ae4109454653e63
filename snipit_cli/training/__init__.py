"""Training and fine-tuning of dense, masked and slim models (no files, no CLI)."""
