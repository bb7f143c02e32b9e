"""Policies: diffusion policy and behaviour-cloning baseline (configuration, modeling, training)."""
