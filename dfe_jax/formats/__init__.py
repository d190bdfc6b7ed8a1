"""On-disk formats and the rules every output follows: atomic files, provenance."""
