"""Datasets (a folder with images and labels.csv), tasks, splits, leakage checks, caching."""
