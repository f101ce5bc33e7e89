"""Training and inference: the model, losses, the Lightning module, the graphed step, the session, bundles."""
