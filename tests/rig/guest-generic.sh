#!/bin/sh
# Runs inside the QEMU guest of ../shared/rig/qemu-usb (see tests/rig/run):
# plugfs with the generic driver over QEMU's own usb-kbd and usb-tablet, and
# the serial driver over its usb-serial (an FTDI chip whose output goes to a
# file on the host), on a real kernel USB stack.  Prints what it checks; exits non-zero on the first
# failure.
set -u
export PLUGFS_DRIVER=/usr/local/bin/plugfs-driver
M=/mnt/usb
fail() { echo "rig: FAIL: $*"; cat $M/events 2>/dev/null; umount $M 2>/dev/null; exit 1; }
ok() { echo "rig: ok: $*"; }

mkdir -p $M
plugfs -o timeout=1000 $M || fail "plugfs did not mount"
# Lookups wait for the drivers: no sleep needed.
[ "$(wc -l < $M/devices)" -eq 3 ] || fail "expected 3 functions: $(cat $M/devices)"
ok "$(cat $M/devices | tr '\n' ';')"
for f in $M/usb0 $M/usb1 $M/serial0; do
	port=$(cat $f/port)
	[ "$(cat $f/vendor_id)" = "$(cat /sys/bus/usb/devices/$port/idVendor)" ] || fail "$f vendor_id"
	[ "$(cat $f/product)" = "$(cat /sys/bus/usb/devices/$port/product)" ] || fail "$f product"
	cmp -s $f/descriptors /sys/bus/usb/devices/$port/descriptors || fail "$f descriptors differ from sysfs"
	[ -r $f/ep81 ] || [ "$(cat $f/driver)" = serial ] || fail "$f has no ep81"
	ok "$f: $(cat $f/product) ($(cat $f/driver)), descriptors equal sysfs"
done
# Drivers run as nobody once their device is open.
pid=$(awk '$1 == "usb0" { print $7 }' $M/devices)
uid=$(awk '/^Uid:/ { print $3 }' /proc/$pid/status)
[ "$uid" = "$(awk -F: '$1 == "nobody" { print $3 }' /etc/passwd)" ] || fail "driver uid $uid"
ok "driver pid $pid runs as uid $uid (nobody)"
# GET_DESCRIPTOR(DEVICE) through ep0 equals the first 18 bytes of descriptors.
exec 3<>$M/usb0/ep0
printf '\200\006\000\001\000\000\022\000' >&3
got=$(od -An -tx1 <&3 | tr -d ' \n')
exec 3<&-
want=$(head -c 18 $M/usb0/descriptors | od -An -tx1 | tr -d ' \n')
[ "$got" = "$want" ] || fail "ep0 GET_DESCRIPTOR gave $got, want $want"
ok "ep0 GET_DESCRIPTOR = $got"
# Nobody types: the interrupt IN endpoint times out.
err=$(dd if=$M/usb0/ep81 bs=8 count=1 2>&1 >/dev/null)
case "$err" in *"timed out"*) ok "idle keyboard ep81: $err" ;; *) fail "ep81 read: $err" ;; esac
# The FTDI chip, bound by the serial driver: bulk OUT reaches QEMU's chardev
# (the host checks the file).  QEMU 7.2's usb-serial never hands
# pipe-chardev input to bulk IN, so the IN direction is left to the
# umockdev FTDI model.  QEMU decodes the baud divisor itself.
ser=$(grep -l "QEMU USB SERIAL" $M/*/product | head -1 | xargs dirname)
[ "$ser" = $M/serial0 ] || fail "usb-serial is not serial0: $ser"
[ "$(cat $ser/line)" = "9600 8N1" ] || fail "$ser/line: $(cat $ser/line)"
echo "115200 8N1" > $ser/line || fail "write $ser/line"
[ "$(cat $ser/line)" = "115384 8N1" ] || fail "$ser/line after 115200: $(cat $ser/line)"
echo "2500000 8N1" > $ser/line 2>/dev/null && fail "2500000 Bd accepted"
echo "dtr off" > $ser/ctl && echo "break 20" > $ser/ctl || fail "$ser/ctl"
grep -q "^dtr off" $ser/status || fail "$ser/status: $(cat $ser/status)"
ok "$ser: line $(cat $ser/line), $(tr '\n' ' ' < $ser/status)"
echo "plugfs wrote this through a real kernel" > $ser/data || fail "write to $ser/data"
ok "wrote to $ser/data"
# Kill usb0's driver; usb1 is undisturbed, usb0 comes back.
pid=$(awk '$1 == "usb0" { print $7 }' $M/devices)
kill -9 "$pid"
i=0
until [ "$(awk '$1 == "usb0" { print $5 }' $M/devices)" = running ] && [ "$(awk '$1 == "usb0" { print $7 }' $M/devices)" != "$pid" ]; do
	i=$((i + 1)); [ $i -lt 100000 ] || fail "usb0 did not come back"
done
[ "$(cat $M/usb0/restarts)" = 1 ] || fail "restarts $(cat $M/usb0/restarts)"
[ "$(cat $M/usb1/restarts)" = 0 ] && [ "$(cat $M/serial0/restarts)" = 0 ] || fail "another driver restarted too"
grep -q "usb0 crash SIGKILL" $M/events || fail "no crash event"
ok "$(grep 'usb0 restart 1' $M/events)"
cmp -s $M/usb0/descriptors /sys/bus/usb/devices/$(cat $M/usb0/port)/descriptors || fail "after restart"
umount $M || fail "umount"
[ -z "$(pidof plugfs-driver plugfs)" ] || fail "processes left: $(pidof plugfs-driver plugfs)"
ok "unmounted, no process left"
