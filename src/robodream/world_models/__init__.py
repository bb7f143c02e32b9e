"""World models: action-conditioned video diffusion (configuration, modeling, training, imagination)."""
