"""The applications on top of the library: the web app (service and page) and ``reco demo``."""
