"""`ociext4 run`'s options as docker run has them: parsed by pure functions
in ociext4.vm.options (shared with the API), errors as 125 and one line,
and the ones that change a boot checked in real boots under TCG."""
# ruff: noqa: F811  (fixtures imported from test_vm_run are parameters here)

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# The boot tests' fixtures (images built once per session) live with them.
from test_vm_run import TCG, bb_img, bb_layout, private_cache, run  # noqa: F401

from ociext4.vm.errors import RunOptionError
from ociext4.vm.kernel import find_kernel, image_version
from ociext4.vm.options import (
    env_with_files,
    parse_cpus,
    parse_memory,
    parse_mount,
    parse_network,
    parse_publish,
    parse_tmpfs,
    parse_volume,
    read_env_file,
)
from ociext4.vm.spec import MIN_MEMORY_MIB, Publish, Volume

# ------------------------------------------------------------- parsing


def test_publish_takes_docker_forms():
    assert parse_publish("8080:80") == Publish(8080, 80, "tcp", "127.0.0.1")
    assert parse_publish("0.0.0.0:53:53/udp") == Publish(53, 53, "udp", "0.0.0.0")
    assert parse_publish("[::1]:8443:443") == Publish(8443, 443, "tcp", "::1")
    for bad in ("80", "a:b", "8080:80/sctp", "99999:80", "1.2.3:80:80", "x:80:80"):
        with pytest.raises(RunOptionError, match="-p"):
            parse_publish(bad)


def test_volumes_and_bind_mounts_name_an_existing_host_directory(tmp_path):
    assert parse_volume(f"{tmp_path}:/data") == Volume(tmp_path, "/data", False)
    assert parse_volume(f"{tmp_path}:/data/:ro") == Volume(tmp_path, "/data", True)
    assert parse_mount(f"type=bind,source={tmp_path},target=/d,readonly") == \
        Volume(tmp_path, "/d", True)
    assert parse_mount(f"type=bind,src={tmp_path},dst=/d,readonly=false") == \
        Volume(tmp_path, "/d", False)
    (tmp_path / "file").write_text("")
    cases = {f"{tmp_path}:rel": "not absolute", f"{tmp_path}:/": "root",
             "named:/data": "named volumes", f"{tmp_path}/nope:/d": "does not exist",
             f"{tmp_path}/file:/d": "not a directory", "/a:/b:/c:/d": "HOST:GUEST"}
    for text, message in cases.items():
        with pytest.raises(RunOptionError, match=message):
            parse_volume(text)
    for text, message in {"type=volume,target=/d": "only bind",
                          f"type=bind,source={tmp_path}": "both needed",
                          f"type=bind,source={tmp_path},target=/d,color=red": "color"}.items():
        with pytest.raises(RunOptionError, match=message):
            parse_mount(text)


def test_memory_has_a_floor_and_cpus_are_capped_at_the_hosts():
    assert parse_memory("512") == parse_memory("512m") == parse_memory("512MiB") == 512
    assert parse_memory("1g") == 1024
    with pytest.raises(RunOptionError, match=f"at least {MIN_MEMORY_MIB}m"):
        parse_memory("64m")
    with pytest.raises(RunOptionError, match="size"):
        parse_memory("lots")
    assert parse_cpus("2", host_cpus=4) == (2, None)
    cpus, warning = parse_cpus("64", host_cpus=2)
    assert cpus == 2 and warning is not None and "has 2" in warning
    for bad in ("0", "-1", "1.5", "x", "nan", "inf", "9" * 400):
        with pytest.raises(RunOptionError, match="--cpus"):
            parse_cpus(bad)


def test_env_file_lines_come_before_e_and_comments_are_skipped(tmp_path):
    f = tmp_path / "env"
    f.write_text("# comment\n\nA=1\n  B=two words \nC\n")
    assert read_env_file(f) == ["A=1", "B=two words ", "C"]
    assert env_with_files(["A=2"], [f]) == ("A=1", "B=two words ", "C", "A=2")
    (tmp_path / "bad").write_text("NOT A NAME=1\n")
    with pytest.raises(RunOptionError, match="bad:1"):
        read_env_file(tmp_path / "bad")
    with pytest.raises(RunOptionError, match="missing"):
        read_env_file(tmp_path / "missing")


def test_network_and_tmpfs_names():
    assert parse_network("user") == parse_network("bridge") == "user"
    assert parse_network("none") == "none"
    with pytest.raises(RunOptionError):
        parse_network("host")
    assert parse_tmpfs("/run/x:size=64m") == "/run/x"
    with pytest.raises(RunOptionError):
        parse_tmpfs("rel")


def test_a_renamed_kernel_is_known_by_the_version_it_carries(tmp_path):
    kernel = find_kernel()
    renamed = tmp_path / "my-kernel"
    shutil.copy(kernel.image, renamed)
    assert image_version(renamed) == kernel.version
    assert find_kernel(renamed).modules == Path("/lib/modules") / kernel.version
    (tmp_path / "junk").write_bytes(b"not a kernel")
    assert image_version(tmp_path / "junk") is None


# ------------------------------------------------------- the command line


def test_option_errors_exit_125_with_one_line(bb_img, tmp_path):
    cases = [(["--bogus"], "unrecognized arguments: --bogus"),
             (["--memory", "64"], f"at least {MIN_MEMORY_MIB}m"),
             (["-p", "80"], "-p 80"),
             (["--network", "none", "-p", "8080:80"], "--network none"),
             (["-v", "named:/x"], "named volumes"),
             (["--rw", "--read-only"], "not allowed with"),
             (["--stop-timeout", "soon"], "seconds"),
             (["--env-file", str(tmp_path / "none")], "--env-file")]
    for args, message in cases:
        p = run(*TCG, *args, bb_img, "--", "true")
        assert p.returncode == 125, (args, p.stderr)
        assert p.stderr.startswith("ociext4: error: ") and message in p.stderr, args
        assert p.stderr.count("\n") == 1 and p.stdout == "", args


def test_docker_run_options_in_one_boot_hostname_env_file_rm_cpus_colon_path_kernel(
        bb_img, tmp_path):
    img = tmp_path / "rootfs-12:30.img"   # QEMU would read "rootfs-12:" as a protocol
    shutil.copy(bb_img, img)
    shutil.copy(f"{bb_img}.json", f"{img}.json")
    kernel = tmp_path / "renamed-kernel"
    shutil.copy(find_kernel().image, kernel)
    (tmp_path / "env").write_text("FROM_FILE=yes\nBOTH=file\n")
    os.chdir(tmp_path)
    many = [str(i) for i in range(5000)]   # more records than the old init's 4096
    p = run(*TCG, "--rm", "-h", "myhost", "--cpus", "64", "--env-file", "env", "-e",
            "BOTH=cli", "--kernel", kernel, "rootfs-12:30.img", "--", "sh", "-c",
            'hostname; echo "$FROM_FILE $BOTH $#"; nproc', "sh", *many)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["myhost", "yes cli 5000", str(os.cpu_count())]
    assert p.stderr == f"ociext4: warning: --cpus 64: the host has {os.cpu_count()}; " \
                       f"using {os.cpu_count()}\n"


def test_help_is_long_only_and_h_is_the_hostname():
    p = run("--help")
    assert p.returncode == 0 and "--hostname" in p.stdout and "--interactive" in p.stdout


def test_a_platform_the_image_is_not_for_is_refused_before_booting(bb_img, bb_layout):
    for image, named in ((bb_img, bb_img), (f"oci:{bb_layout}", bb_layout)):
        proc = run(*TCG, "--platform", "linux/arm64", image, "--", "true")
        assert proc.returncode == 125
        assert proc.stderr == (f"ociext4: error: {named}: no manifest for linux/arm64 "
                               "(has: linux/amd64)\n")
    # Any spelling of the image's own platform runs it.
    assert run(*TCG, "--platform", "AMD64", bb_img, "--", "true").returncode == 0
