"""ReCo+: a segmenter distilled from ReCo's pseudo-labels (DESIGN.md §1.9)."""
