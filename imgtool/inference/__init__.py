"""Classifying many inputs with a resolved model, here or packed for workers elsewhere."""
