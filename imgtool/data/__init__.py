"""What goes in: labels, images (decoded exactly one way), training distortions, and labelled
folders with their stable split."""
