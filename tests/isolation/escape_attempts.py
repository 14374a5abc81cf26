#!/usr/bin/env python3
"""Ways out of an isolated partition, tried from inside it as root.

Run by escape_test.sh under `hvsock run --vm NAME`. Each attempt tries to
reach something of hvsockd's other than the partition's own control socket,
or to undo the sandbox; it prints "refused: NAME: WHY" when the kernel or
hvsock refused it, and "ESCAPED: NAME: WHAT" when it got through. Exit
status 1 if anything got through (or an attempt could not be made at all).
"""
import ctypes
import ctypes.util
import errno
import os
import socket
import sys

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384
MNT_DETACH = 2
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
PTRACE_ATTACH = 16

runtime_dir, state_dir, own_name, daemon_pid = sys.argv[1:5]
other_partitions = sys.argv[5:]
results = []


def record(name, refused, why):
    results.append((name, refused, why))
    print(("refused" if refused else "ESCAPED") + f": {name}: {why}", flush=True)


def syscall_refused(name, rc):
    err = ctypes.get_errno()
    if rc == 0:
        record(name, False, "the call succeeded")
    else:
        record(name, True, f"{errno.errorcode.get(err, err)} ({os.strerror(err)})")


def try_connect(name, path, kind=socket.SOCK_SEQPACKET):
    s = socket.socket(socket.AF_UNIX, kind)
    try:
        s.connect(path)
        record(name, False, f"connected to {path}")
    except OSError as e:
        record(name, True, f"{errno.errorcode.get(e.errno, e.errno)} ({e.strerror})")
    finally:
        s.close()


def mount(source, target, fstype, flags):
    return libc.mount(
        None if source is None else source.encode(),
        target.encode(),
        None if fstype is None else fstype.encode(),
        ctypes.c_ulong(flags),
        None,
    )


# The sockets of the switch that are not this partition's.
try_connect("the management socket", f"{runtime_dir}/hvsockd.sock", socket.SOCK_STREAM)
try_connect("the socket broker", f"{runtime_dir}/broker.sock", socket.SOCK_STREAM)
try_connect("the seqpacket socket broker", f"{runtime_dir}/broker-seqpacket.sock",
            socket.SOCK_SEQPACKET)
try_connect("the host's control socket", f"{runtime_dir}/partitions/host/control.sock")
for other in other_partitions:
    try_connect(f"partition {other}'s control socket", f"{runtime_dir}/partitions/{other}/control.sock")
# A QEMU partition's sockets (escape_test.sh checks they exist on the host).
for other in other_partitions:
    try_connect(f"partition {other}'s vhost-user socket", f"{runtime_dir}/vhost-user/{other}.sock",
                socket.SOCK_STREAM)
    try_connect(f"partition {other}'s hybrid vsock socket", f"{runtime_dir}/hybrid/{other}.sock",
                socket.SOCK_STREAM)
# Relative to a working directory inside the runtime dir (escape_test.sh
# starts us there; the sandbox entered it again by path).
try_connect("the management socket from the working directory", "hvsockd.sock",
            socket.SOCK_STREAM)

# Inherited directory descriptor (escape_test.sh passes fd 7 open on the
# runtime dir from outside).
try:
    os.fstat(7)
    try_connect("the management socket through an inherited directory fd",
                "/proc/self/fd/7/hvsockd.sock", socket.SOCK_STREAM)
except OSError as e:
    record("an inherited directory fd", True, f"closed at entry ({e.strerror})")

# The registry on disk.
listing = os.listdir(state_dir)
record("reading the state dir", not listing, f"it lists {listing}")
try:
    with open(f"{state_dir}/state.json", "w") as f:
        f.write("{}")
    record("writing the state dir", False, "state.json written")
except OSError as e:
    record("writing the state dir", True, f"{errno.errorcode.get(e.errno)} ({e.strerror})")

# Undoing the covers.
syscall_refused("umount the runtime dir", libc.umount2(runtime_dir.encode(), 0))
syscall_refused("umount -l the runtime dir", libc.umount2(runtime_dir.encode(), MNT_DETACH))
syscall_refused("umount the state dir", libc.umount2(state_dir.encode(), MNT_DETACH))
own_dir = f"{runtime_dir}/partitions/{own_name}"
syscall_refused("umount the partition directory's bind mount",
                libc.umount2(own_dir.encode(), MNT_DETACH))
try:
    os.unlink(f"{own_dir}/control.sock")
    record("replace its own control socket", False, "unlinked it")
except OSError as e:
    record("replace its own control socket", True, f"{errno.errorcode.get(e.errno)} ({e.strerror})")
try:
    with open(f"{own_dir}/planted", "w") as f:
        f.write("x")
    record("plant a file in the host's runtime dir", False, "written")
except OSError as e:
    record("plant a file in the host's runtime dir", True,
           f"{errno.errorcode.get(e.errno)} ({e.strerror})")
syscall_refused("remount the runtime dir writable",
                mount(None, runtime_dir, None, MS_REMOUNT | MS_BIND))
peek = f"/tmp/hvsock-escape-peek-{os.getpid()}"
os.makedirs(peek, exist_ok=True)
parent = os.path.dirname(runtime_dir)
rc = mount(parent, peek, None, MS_BIND)  # not MS_REC: no covers
if rc == 0:
    leaked = os.path.exists(f"{peek}/{os.path.basename(runtime_dir)}/hvsockd.sock")
    libc.umount2(peek.encode(), MNT_DETACH)
    record("bind the runtime dir's parent without its covers", not leaked,
           "the covers came along" if not leaked else "the management socket showed")
else:
    syscall_refused("bind the runtime dir's parent without its covers", rc)
rc = mount("proc", peek, "proc", 0)
syscall_refused("mount a new procfs", rc)
if rc == 0:
    libc.umount2(peek.encode(), MNT_DETACH)
os.rmdir(peek)

# Other processes: hvsockd's /proc entry, its root and cwd.
for what in ("root", "cwd"):
    path = f"/proc/{daemon_pid}/{what}/hvsockd.sock"
    try_connect(f"hvsockd's /proc/PID/{what}", path, socket.SOCK_STREAM)
visible = [p for p in os.listdir("/proc") if p.isdigit()]
daemon_seen = False
for p in visible:
    try:
        with open(f"/proc/{p}/cmdline", "rb") as f:
            daemon_seen |= b"hvsockd" in f.read().split(b"\0")[0]
    except OSError:
        pass
record("seeing processes outside (hvsockd)", not daemon_seen,
       f"{len(visible)} processes visible, all the partition's")
for what in ("root", "ns/mnt"):
    try:
        os.stat(f"/proc/1/{what}")
        fd = os.open(f"/proc/1/{what}", os.O_RDONLY)
        os.close(fd)
        record(f"the partition's init's /proc/1/{what}", False, "opened")
    except OSError as e:
        record(f"the partition's init's /proc/1/{what}", True,
               f"{errno.errorcode.get(e.errno)} ({e.strerror})")
syscall_refused("ptrace the partition's init", libc.ptrace(PTRACE_ATTACH, 1, None, None))

# Host procfs mounted elsewhere (escape_test.sh mounts one at $work/hostproc).
extra_proc = os.environ.get("EXTRA_PROC")
if extra_proc:
    try:
        seen = os.listdir(extra_proc)
        leaked = str(daemon_pid) in seen
        record("another procfs mount", not leaked,
               "hvsockd visible there" if leaked else "gone or shows only the partition")
    except OSError as e:
        record("another procfs mount", True, f"{e.strerror}")

# A nested user and mount namespace: the covers stay locked there too.
child = os.fork()
if child == 0:
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        os._exit(3)
    os._exit(0 if libc.umount2(runtime_dir.encode(), MNT_DETACH) == 0 else 2)
_, status = os.waitpid(child, 0)
code = os.waitstatus_to_exitcode(status)
record("umount from a nested user namespace", code != 0,
       {0: "unmounted", 2: "umount2 refused", 3: "unshare refused"}.get(code, f"exit {code}"))

# Devices and the kernel.
node = f"/tmp/hvsock-escape-dev-{os.getpid()}"
rc = libc.mknod(node.encode(), 0o60600, 0x0800)
syscall_refused("mknod a block device", rc)
if rc == 0:
    os.unlink(node)
try:
    # Writes back the value it has: harmless even if it got through.
    with open("/proc/sys/kernel/printk") as f:
        printk = f.read().split()[0]
    with open("/proc/sys/kernel/printk", "w") as f:
        f.write(printk)
    record("write a sysctl", False, "written")
except OSError as e:
    record("write a sysctl", True, f"{errno.errorcode.get(e.errno)} ({e.strerror})")

escaped = [r for r in results if not r[1]]
print(f"{len(results)} attempts, {len(escaped)} got through", flush=True)
sys.exit(1 if escaped else 0)
