"""Full-catalogue evaluation of trained models."""
