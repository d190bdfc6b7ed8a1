"""The synthetic corpus with a known answer, and scoring how well tokens recover it."""
