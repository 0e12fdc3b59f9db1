"""Checking attention against the output: targets, gradients, perturbation, faithfulness, agreement, verdict."""
