"""Trained model -> tokens: restore, chunked JAX encoding, export, NumPy tokenizer."""
