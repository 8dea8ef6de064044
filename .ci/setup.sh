#!/usr/bin/env bash
# Installs everything ociext4 and its test suite need on a Debian 12 machine,
# as root: the Debian packages, the project itself (pip install -e '.[test]',
# which compiles csrc/ through cffi and the guest's static init), and loop
# devices for the tests that mount images. Both the README's first command
# (fixtures/quickstart.sh) and CI (.ci/run) start with it, so the suite
# passes right after the quickstart on a fresh machine.
set -euo pipefail

cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# The machine's Python is pyenv's; make sure its shims win over /usr/bin/python3
# even if CI's environment lost them (Debian's python3 refuses pip installs).
pyenv_root="${PYENV_ROOT:-${HOME:-/root}/.pyenv}"
if [ -d "$pyenv_root/shims" ]; then
    case ":$PATH:" in
        *":$pyenv_root/shims:"*) ;;
        *) export PATH="$pyenv_root/shims:$pyenv_root/bin:$PATH" ;;
    esac
fi

log="$(mktemp "${TMPDIR:-/tmp}/ociext4-ci.XXXXXX.log")"
trap 'rm -f "$log"' EXIT

# Run a noisy step with its output in $log; show the log only if it fails.
quiet() {
    local what="$1"
    shift
    echo "setup: $what"
    if ! "$@" >>"$log" 2>&1; then
        echo "setup: FAILED: $what ($*); log follows" >&2
        cat "$log" >&2
        exit 1
    fi
}

# e2fsprogs: mkfs.ext4/e2fsck/debugfs, the reference and the judge.
# util-linux + mount: losetup and mount for tests that mount images.
# gcc + libc6-dev: the C core is compiled at install time (pyenv's Python
#   carries its own headers, so python3-dev is not needed).
# umoci: the reference unpacker the OCI-rule tests compare against.
# clang + libclang-rt-14-dev: libFuzzer with ASan/UBSan for the short fuzz runs
#   of the C core (tests/test_fuzz.py).
# docker-registry: the real registry the pull tests start (open, htpasswd, token auth);
#   skopeo pushes the fixture images into it; apache2-utils gives htpasswd;
#   openssl makes the token server's signing key and the TLS test's certificate.
# tar, gzip, pigz, zstd, xz-utils: building and decompressing test tars;
#   dpkg-deb (from the essential dpkg) reads the .deb fixtures itself.
# qemu-system-x86: `ociext4 run` boots images in it (TCG); its hard
#   dependencies bring the firmware q35 needs (seabios, qemu-system-data with
#   the PVH and linuxboot option ROMs, ipxe-qemu), so --no-install-recommends
#   is enough; they are listed anyway so a packaging change cannot drop them.
# linux-image-cloud-amd64: the guest kernel and its virtio modules.
# busybox-static: the busybox of the run tests' image (fixtures/runimages.py).
# cpio: the tests read the initramfs writer's archives back with GNU cpio.
# cryptsetup-bin: veritysetup judges the --verity hash trees (tests/test_verity.py).
# tmux: the `run -it` test drives an interactive guest shell in a real terminal.
apt_packages=(
    e2fsprogs
    util-linux
    mount
    gcc
    libc6-dev
    tar
    gzip
    pigz
    zstd
    xz-utils
    umoci
    clang
    libclang-rt-14-dev
    docker-registry
    skopeo
    apache2-utils
    openssl
    qemu-system-x86
    qemu-system-data
    seabios
    linux-image-cloud-amd64
    busybox-static
    cpio
    tmux
    cryptsetup-bin
    strace          # tests/test_verity.py counts the commit's hole punches
)

# shellcheck disable=SC2317  # called through quiet()
apt_update() {
    # One retry: a mirror sync in progress gives transient hash-sum errors.
    apt-get update -q || { sleep 5; apt-get update -q; }
}
quiet "apt-get update" apt_update
quiet "apt-get install ${apt_packages[*]}" \
    apt-get install -y -q --no-install-recommends "${apt_packages[@]}"

# pip builds in its own environment; a rebuild in place after changing csrc/
# (python3 setup.py build_ext --inplace) uses this one, which needs a
# setuptools that reads pyproject.toml's SPDX license.
quiet "pip install setuptools>=77" \
    python3 -m pip install -q --root-user-action=ignore 'setuptools>=77'
quiet "pip install -e .[test]" \
    python3 -m pip install -q --root-user-action=ignore -e '.[test]'
# An editable install leaves the bytecode to the first import, and where
# PYTHONDONTWRITEBYTECODE is set (these machines set it) it is never written:
# every ociext4 command, and every one the tests run, would compile the
# sources again (about 0.1 s each). A pip install compiles it at install time.
quiet "python3 -m compileall ociext4 cli" \
    python3 -m compileall -q ociext4 cli
# pyenv only sees new console scripts (ociext4) after a rehash.
if command -v pyenv >/dev/null 2>&1; then
    pyenv rehash >>"$log" 2>&1 || true
fi
command -v ociext4 >/dev/null 2>&1 || echo "setup: warning: ociext4 is not on PATH" >&2

# Loop devices, for tests that mount images. Best effort: on this kind of
# machine /dev is a devtmpfs and the loop driver is built in, so the nodes
# exist and losetup creates more on demand; elsewhere create the usual ones.
if command -v modprobe >/dev/null 2>&1; then
    modprobe loop >/dev/null 2>&1 || true
fi
if [ ! -e /dev/loop-control ]; then
    mknod -m 0660 /dev/loop-control c 10 237 2>/dev/null || true
fi
for i in 0 1 2 3 4 5 6 7; do
    if [ ! -e "/dev/loop$i" ]; then
        mknod -m 0660 "/dev/loop$i" b 7 "$i" 2>/dev/null || true
    fi
done
if loopdev="$(losetup -f 2>/dev/null)"; then
    echo "setup: loop devices available (next free: $loopdev)"
else
    # CI is where the kernel's own mount proves the images: no skipping here.
    echo "setup: no usable loop device; the mount tests cannot run" >&2
    exit 1
fi

echo "setup: $(mke2fs -V 2>&1 | head -n1); $(python3 --version 2>&1)"
