"""The HTML report: what each token does, when it fires, how well it reconstructs."""
