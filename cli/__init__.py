"""The ociext4 command line (installed as the ociext4_cli package)."""
