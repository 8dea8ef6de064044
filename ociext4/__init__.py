"""ociext4: OCI images, directories and tarballs to ext4 filesystem images."""

__version__ = "0.1.0"
