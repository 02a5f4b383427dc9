"""Frozen item content tables: read, align, build (SigLIP images, sentence text, attributes)."""
