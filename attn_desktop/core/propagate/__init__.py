"""Propagation of attention: head aggregation and diagnostics, rollout, exact flow."""
