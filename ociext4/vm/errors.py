"""The VM's typed error (the library's others are in ociext4.errors)."""

from ..errors import Ociext4Error


class VmError(Ociext4Error):
    """The VM could not be set up, started or finished (kernel, initramfs, QEMU, guest)."""
