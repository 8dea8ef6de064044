"""The VM's typed errors (the library's others are in ociext4.errors)."""

from ..errors import Ociext4Error


class VmError(Ociext4Error):
    """The VM could not be set up, started or finished (kernel, initramfs, QEMU, guest)."""


class RunOptionError(VmError):
    """An option of the run (memory, ports, volumes, env file, ...) cannot be used."""
