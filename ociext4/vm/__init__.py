"""The thin VM: a host kernel, an initramfs of ours with a tiny static init,
and QEMU booting an ext4 image to run one command in it."""
