"""Old name of :mod:`reco.train` (ReCo+), kept for users' code."""
