#!/bin/sh
# Runs inside the QEMU guest (see tests/rig/run) with the usbip-host and
# vhci-hcd modules and the usbip tools: QEMU's usb-storage, with the host's
# image, is exported with `usbip bind` and attached back over TCP with
# `usbip attach`, the way a device on another machine is.  plugfs runs as
# `nobody` in group plugdev, which udev/70-plugfs.rules lets open the
# device, with allow_other (user_allow_other in /etc/fuse.conf) so that
# root checks the tree.  Prints what it checks; exits non-zero on the first
# failure.  (/usr/local/bin/setpriv is util-linux's: busybox's cannot change user.)
set -u
export PLUGFS_DRIVER=/usr/local/bin/plugfs-driver
M=/mnt/usb
WAIT_TICKS=3000
. /lib.sh
node_of() { printf '/dev/bus/usb/%03d/%03d' "$(cat /sys/bus/usb/devices/$1/busnum)" "$(cat /sys/bus/usb/devices/$1/devnum)"; }
md5_of() { dd if="$1" bs=65536 count=16 2>/dev/null | md5sum | cut -d' ' -f1; }
as_user() { /usr/local/bin/setpriv --reuid=nobody --regid=nogroup --groups=plugdev "$@"; }

# The udev rule as `make install` puts it, with names resolved (the rig's
# udevd runs with --resolve-names=never, which ignores GROUP=).
echo 'plugdev:x:46:nobody' >> /etc/group
cp /70-plugfs.rules /etc/udev/rules.d/70-plugfs.rules
udevadm control --exit
/usr/lib/systemd/systemd-udevd --daemon >/dev/null 2>&1 || fail "udevd did not start"
udevadm trigger --subsystem-match=usb --action=add && udevadm settle --timeout=30 || fail "udev trigger"
busid=
for d in /sys/bus/usb/devices/*-*; do
	case "${d##*/}" in *:*) continue ;; esac
	[ "$(cat $d/idVendor)" = 46f4 ] && busid=${d##*/}
done
[ -n "$busid" ] || fail "no QEMU usb-storage"
[ "$(stat -c '%G %a' "$(node_of $busid)")" = "plugdev 664" ] || fail "udev rule: $(ls -l "$(node_of $busid)")"
ok "70-plugfs.rules: $(node_of $busid) is $(stat -c '%U:%G %a' "$(node_of $busid)")"

echo user_allow_other > /etc/fuse.conf
mkdir -p $M && chown nobody $M
as_user plugfs -o allow_other,timeout=5000 $M || fail "plugfs did not mount as nobody"
until_true '[ "$(field disk0 5)" = running ]'
pid=$(field disk0 7)
[ "$(awk '/^Uid:/ { print $2 }' /proc/$pid/status)" = "$(id -u nobody)" ] || fail "driver uid"
grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/$pid/status && grep -q '^Seccomp:[[:space:]]*2$' /proc/$pid/status ||
	fail "driver not sandboxed"
[ "$(md5_of $M/disk0/data)" = "$(cat /image.md5)" ] || fail "local disk0 data"
ok "plugfs as nobody:plugdev, allow_other: local disk0 on $busid read back, driver uid nobody, sandboxed"

# Export.  The exported device belongs to usbip-host: it leaves the tree.
ip link set lo up || fail "lo"
# usbip attach records its connections there.
mkdir -p /var/run/vhci_hcd
usbipd -D || fail "usbipd"
until_true 'usbip list -r 127.0.0.1 >/dev/null 2>&1'
usbip bind -b $busid >/dev/null || fail "usbip bind -b $busid"
until_true '[ -z "$(field disk0 5)" ]'
grep -q "disk0 detach $busid" $M/events || fail "no detach event for the bound device"
as_user plugfs --list | grep -q "^- $busid 46f4:0001 skip: device bound to kernel driver usbip-host$" ||
	fail "plugfs --list: $(as_user plugfs --list)"
ok "usbip bind -b $busid: disk0 left; plugfs --list: $(as_user plugfs --list | grep usbip-host)"

# Attach: a new device on vhci_hcd, found by hotplug, under its old name.
usbip attach -r 127.0.0.1 -b $busid || fail "usbip attach"
until_true '[ "$(field disk0 5)" = running ]'
vport=$(cat $M/disk0/port)
[ "$vport" != "$busid" ] || fail "disk0 is still on $busid"
case "$(readlink -f /sys/bus/usb/devices/$vport)" in *vhci_hcd*) ;; *) fail "disk0 ($vport) not on vhci_hcd" ;; esac
[ "$(stat -c '%G %a' "$(node_of $vport)")" = "plugdev 664" ] || fail "udev rule on $vport: $(ls -l "$(node_of $vport)")"
cmp -s $M/disk0/descriptors /sys/bus/usb/devices/$vport/descriptors || fail "descriptors differ from sysfs"
[ "$(stat -c %s $M/disk0/data)" = "$(cat /image.size)" ] || fail "disk0/data size over usbip"
[ "$(md5_of $M/disk0/data)" = "$(cat /image.md5)" ] || fail "disk0/data over usbip"
ok "usbip attach: disk0 on $vport (vhci_hcd, node plugdev 664), $(cat $M/disk0/vendor) $(cat $M/disk0/model), read back identical"

# A crash over USB/IP is a crash like any other.
pid=$(field disk0 7)
kill -SEGV "$pid"
until_true '[ "$(field disk0 5)" = running ] && [ "$(field disk0 7)" != "$pid" ]'
[ "$(cat $M/disk0/restarts)" = 1 ] || fail "restarts $(cat $M/disk0/restarts)"
[ "$(md5_of $M/disk0/data)" = "$(cat /image.md5)" ] || fail "disk0/data after the respawn"
ok "$(grep 'disk0 crash SIGSEGV' $M/events | tail -1 | cut -d' ' -f2-); read back identical after the respawn"

# Detach with a handle open: the function goes, the handle says ENODEV.
exec 3<$M/disk0/data
port=$(usbip port | sed -n 's/^Port \([0-9]*\): <Port in Use>.*/\1/p' | head -1)
[ -n "$port" ] || fail "usbip port: $(usbip port)"
usbip detach -p "$port" >/dev/null || fail "usbip detach -p $port"
until_true '[ -z "$(field disk0 5)" ]'
dd bs=512 count=1 <&3 >/dev/null 2>/tmp/dd.err && fail "read from a detached device succeeded"
grep -q "No such device" /tmp/dd.err || fail "read after detach: $(cat /tmp/dd.err)"
exec 3<&-
ok "usbip detach -p $port: disk0 gone; open handle: $(cat /tmp/dd.err | head -1)"

# Unexport: the device is the kernel's generic driver's again, and plugfs's.
usbip unbind -b $busid >/dev/null || fail "usbip unbind"
until_true '[ "$(field disk0 5)" = running ]'
[ "$(cat $M/disk0/port)" = "$busid" ] || fail "disk0 back on $(cat $M/disk0/port)"
[ "$(md5_of $M/disk0/data)" = "$(cat /image.md5)" ] || fail "local disk0 after unbind"
ok "usbip unbind: disk0 back on $busid, read back identical"

! grep -q SIGSYS $M/events || fail "a driver died of SIGSYS: $(grep SIGSYS $M/events)"
umount $M || fail "umount"
until_true '[ -z "$(pidof plugfs-driver plugfs)" ]'
ok "unmounted, no process left"
