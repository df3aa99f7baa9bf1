"""Measuring: letter scoring (one forward pass per question), evaluation passes, the accuracy report."""
