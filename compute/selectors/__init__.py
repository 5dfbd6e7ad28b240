"""Reads of compute records that need care (no torch: numpy at most)."""
