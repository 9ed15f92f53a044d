"""Capture stage: facts about the execution context (environment, seeds, data digests)."""
