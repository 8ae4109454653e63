"""Node-level (SNAP-it) pruning: coupled unit groups, gates, physical removal of channels."""
