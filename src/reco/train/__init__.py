"""ReCo+: a segmenter distilled from ReCo's pseudo-labels (docs/method.md §9)."""
