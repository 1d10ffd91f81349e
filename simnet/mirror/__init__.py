"""Release mirror: upstream-named archives whose binaries launch the stand-ins."""
