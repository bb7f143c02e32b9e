"""Train the world model and its probe, dream, evaluate the model."""
