"""The ext4 writer: planning in Python, the bytes in C (csrc/ through cffi)."""

from .writer import Ext4Options, Ext4Writer, ImageInfo

__all__ = ["Ext4Options", "Ext4Writer", "ImageInfo"]
