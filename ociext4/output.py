"""Where an image is written.

A regular file (or a name not yet taken) is written under a temporary name
beside it and renamed into place only when complete, so a failure never
leaves half an image.  A block device (a loop device, an LVM volume, a VM's
disk) cannot be renamed over: it is written in place, held with O_EXCL so
that nothing mounts it meanwhile.  Anything else (a FIFO, a character
device such as /dev/full, a socket) is refused before a byte is written.
Every error names the output, never the temporary.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import struct
from pathlib import Path

from . import tempfiles
from .errors import ImageError

# linux/fs.h
_BLKZEROOUT = 0x127F               # _IO(0x12, 127)
_FS_IOC_GETFLAGS = 0x80086601      # _IOR('f', 1, long)
_FS_IMMUTABLE_FL = 0x10
_FS_APPEND_FL = 0x20

_KIND = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
         stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}


def _fail(path: Path, what: str, err: int | None = None) -> ImageError:
    return ImageError(f"{path}: {what}", err)


def _mount_point(rdev: int) -> str | None:
    """Where the block device `rdev` is mounted, if it is."""
    want = f"{os.major(rdev)}:{os.minor(rdev)}"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 4 and fields[2] == want:
            return fields[4].replace("\\040", " ")
    return None


def _file_flags(path: Path) -> int:
    """The inode flags chattr sets (0 where the file system has none)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return 0
    try:
        return struct.unpack("l", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, bytes(8)))[0]
    except OSError:
        return 0
    finally:
        os.close(fd)


class Output:
    """One output being written: open with `Output(path)`, write to `fd`,
    then `finish()` or `abort()`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.device_size: int | None = None   # bytes, for a block device
        self._tmp: Path | None = None
        try:
            st = os.stat(path)   # through symlinks: /dev/vg/lv is one
        except FileNotFoundError:
            st = None
            self._check_parent()
        except OSError as e:
            raise _fail(path, e.strerror or str(e), e.errno) from None
        if st is not None and stat.S_ISBLK(st.st_mode):
            self.fd = self._open_device(st.st_rdev)
            return
        if st is not None and not stat.S_ISREG(st.st_mode):
            kind = _KIND.get(stat.S_IFMT(st.st_mode), "not a regular file")
            if stat.S_ISDIR(st.st_mode):
                raise _fail(path, "is a directory", errno.EISDIR)
            raise _fail(path, f"is {kind}; the output must be a regular file or a block device")
        if st is not None:
            flags = _file_flags(path)
            if flags & (_FS_IMMUTABLE_FL | _FS_APPEND_FL):
                which = "immutable" if flags & _FS_IMMUTABLE_FL else "append-only"
                raise _fail(path, f"is {which} (chattr), so it cannot be replaced", errno.EPERM)
        tempfiles.sweep_beside(path)
        try:
            self.fd, self._tmp = tempfiles.create_beside(path)
        except OSError as e:
            raise _fail(path, f"cannot create the image beside it: {e.strerror}", e.errno) from None

    @property
    def is_device(self) -> bool:
        return self.device_size is not None

    def _check_parent(self) -> None:
        parent = self.path.parent
        if not parent.exists():
            raise _fail(self.path, f"directory {parent} does not exist", errno.ENOENT)
        if not parent.is_dir():
            raise _fail(self.path, f"{parent} is not a directory", errno.ENOTDIR)

    def _open_device(self, rdev: int) -> int:
        where = _mount_point(rdev)
        if where is not None:
            raise _fail(self.path, f"is mounted at {where}; unmount it first", errno.EBUSY)
        try:
            # O_EXCL on a block device: refused while mounted or held, and
            # keeps it from being mounted while this runs.
            fd = os.open(self.path, os.O_RDWR | os.O_EXCL | os.O_CLOEXEC)
        except OSError as e:
            if e.errno == errno.EBUSY:
                raise _fail(self.path, "is in use (mounted, or held by another device)",
                            e.errno) from None
            raise _fail(self.path, e.strerror or str(e), e.errno) from None
        self.device_size = os.lseek(fd, 0, os.SEEK_END)
        return fd

    def zero(self, length: int) -> None:
        """Zeroes a device's first `length` bytes: the image leaves free
        space, unused inode tables and the journal unwritten, as holes that
        must read as zeros.  Instant where the device can zero by itself
        (loop, thin volumes, most SSDs); a full write elsewhere."""
        if not self.is_device or length <= 0:
            return
        try:
            fcntl.ioctl(self.fd, _BLKZEROOUT, struct.pack("QQ", 0, length))
        except OSError as e:
            raise _fail(self.path, f"cannot zero the device: {e.strerror}", e.errno) from None

    def finish(self, fsync: bool) -> None:
        """Makes the written image the output."""
        try:
            if fsync:
                os.fsync(self.fd)
        except OSError as e:
            self.abort()
            raise _fail(self.path, e.strerror or str(e), e.errno) from None
        os.close(self.fd)
        self.fd = -1
        if self._tmp is None:
            return
        try:
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, self.path)
        except OSError as e:
            self.abort()
            raise _fail(self.path, e.strerror or str(e), e.errno) from None
        tempfiles.untrack(self._tmp)
        self._tmp = None

    def abort(self) -> None:
        """Closes the output; a temporary is removed, a device left as it is
        (zeroed where nothing was written yet, and with no superblock, which
        is written last)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()
            tempfiles.untrack(self._tmp)
            self._tmp = None
