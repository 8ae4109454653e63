"""Pure pruning mechanics: schedules, masks and the scoring loop. No CLI, no files."""
