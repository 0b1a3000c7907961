"""Training algorithms: each is pure targets + loss functions; the training loop is shared."""
