#!/bin/sh
# Runs inside the QEMU guest of ../shared/rig/qemu-usb (see tests/rig/run),
# on a real kernel USB stack, over devices QEMU models and nobody here wrote:
# usb-kbd and usb-tablet (hid), usb-storage with the host's pattern image
# (disk), usb-serial, an FTDI whose output goes to a file on the host
# (serial), usb-mtp over a host folder (still), and usb-ccid, which no
# class driver takes (usb, the generic driver).  The host's monitor script unplugs the tablet and plugs it back.
# Prints what it checks; exits non-zero on the first failure.
set -u
export PLUGFS_DRIVER=/usr/local/bin/plugfs-driver
M=/mnt/usb
. /lib.sh

mkdir -p $M
plugfs -o timeout=2000 $M || fail "plugfs did not mount"
# Lookups wait for the drivers: no sleep needed.
[ "$(wc -l < $M/devices)" -eq 6 ] || fail "expected 6 functions: $(cat $M/devices)"
ok "$(cat $M/devices | tr '\n' ';')"
for f in hid0 hid1 disk0 serial0 still0 usb0; do
	[ -d $M/$f ] || fail "no $f"
	port=$(cat $M/$f/port)
	[ "$(cat $M/$f/vendor_id)" = "$(cat /sys/bus/usb/devices/$port/idVendor)" ] || fail "$f vendor_id"
	[ "$(cat $M/$f/product)" = "$(cat /sys/bus/usb/devices/$port/product)" ] || fail "$f product"
	cmp -s $M/$f/descriptors /sys/bus/usb/devices/$port/descriptors || fail "$f descriptors differ from sysfs"
	ok "$f: $(cat $M/$f/product) ($(cat $M/$f/driver)), descriptors equal sysfs"
done
# Drivers run as nobody once their device is open.
pid=$(field usb0 7)
uid=$(awk '/^Uid:/ { print $3 }' /proc/$pid/status)
[ "$uid" = "$(awk -F: '$1 == "nobody" { print $3 }' /etc/passwd)" ] || fail "driver uid $uid"
ok "driver pid $pid runs as uid $uid (nobody)"
# ...sandboxed: no_new_privs, a seccomp filter, nothing in the environment.
for f in hid0 hid1 serial0 usb0 disk0 still0; do
	p=$(field $f 7)
	grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/$p/status || fail "$f: no NoNewPrivs"
	grep -q '^Seccomp:[[:space:]]*2$' /proc/$p/status || fail "$f: no seccomp filter"
	[ -z "$(tr -d '\000' </proc/$p/environ)" ] || fail "$f: environment left"
done
ok "drivers sandboxed: NoNewPrivs 1, Seccomp 2, empty environment"

# hid: the keyboard's and the tablet's report descriptors, as the device gives them.
kbd=$(grep -l Keyboard $M/hid*/product | xargs dirname)
tab=$(grep -l Tablet $M/hid*/product | xargs dirname)
case "$(head -c 4 $kbd/report_descriptor | od -An -tx1 | tr -d ' \n')" in
05010906) ;; *) fail "$kbd/report_descriptor: $(od -An -tx1 $kbd/report_descriptor | head -2)" ;; esac
[ "$(stat -c %s $kbd/report_descriptor)" = "$(wc -c < $kbd/report_descriptor)" ] || fail "report_descriptor st_size"
ok "$kbd report_descriptor: $(stat -c %s $kbd/report_descriptor) bytes, Generic Desktop / Keyboard"
# Nobody types: a read of input blocks, and a signal ends it (EINTR, the
# transfer cancelled), long before any deadline.
timeout 1 dd if=$kbd/input bs=8 count=1 of=/dev/null 2>/dev/null && fail "idle keyboard input gave a report"
[ "$(cat $kbd/restarts)" = 0 ] || fail "the interrupted read restarted the driver"
ok "idle keyboard input: blocked until timeout(1) ended it"

# disk: QEMU's usb-storage over the host's image (snapshot: writes stay in the guest).
size=$(stat -c %s $M/disk0/data)
[ "$size" = "$(cat /image.size)" ] || fail "disk0/data is $size bytes, image $(cat /image.size)"
[ "$(($(cat $M/disk0/blocks) * $(cat $M/disk0/block_size)))" = "$size" ] || fail "blocks * block_size"
sum=$(dd if=$M/disk0/data bs=1M 2>/dev/null | md5sum | cut -d' ' -f1)
[ "$sum" = "$(cat /image.md5)" ] || fail "disk0/data md5 $sum, image $(cat /image.md5)"
ok "disk0: $(cat $M/disk0/vendor) $(cat $M/disk0/model), $size bytes read back identical"
# A write that ends mid-block (read-modify-write in the driver), at block 1.
cat /usr/local/bin/plugfs-driver /usr/local/bin/plugfs | head -c 300000 > /tmp/w
dd if=/tmp/w of=$M/disk0/data bs=4096 seek=1 conv=notrunc 2>/dev/null || fail "write disk0"
dd if=$M/disk0/data bs=4096 skip=1 count=74 2>/dev/null | head -c 300000 | cmp - /tmp/w || fail "disk0 read after write"
echo sync > $M/disk0/ctl || fail "disk0 ctl sync"
ok "disk0: 300000 bytes written at offset 4096 and read back"
# Write-back through a driver crash: dd at 64 KiB a block, the driver killed
# once 2 MiB went through.  Every block dd counts as written is on the medium:
# the respawned driver first writes what its predecessor had been given and
# had not confirmed (the `replay` event).
head -c 12582912 /dev/urandom >/tmp/w12
pid=$(field disk0 7)
dd if=/tmp/w12 of=$M/disk0/data bs=64k seek=16 conv=notrunc 2>/tmp/dd12.err &
ddpid=$!
until_true '[ "$(awk "/^wchar/ { print \$2 }" /proc/$ddpid/io 2>/dev/null || echo 12582912)" -ge 2097152 ]'
kill -9 "$pid"
wait $ddpid
out=$(sed -n 's/^\([0-9]*\)+[0-9]* records out$/\1/p' /tmp/dd12.err)
[ -n "$out" ] || fail "dd through a killed disk driver: $(cat /tmp/dd12.err)"
until_true '[ "$(field disk0 5)" = running ] && [ "$(field disk0 7)" != "$pid" ]'
head -c $((out * 65536)) /tmp/w12 >/tmp/w12.out
dd if=$M/disk0/data bs=64k skip=16 count=$out 2>/dev/null | cmp - /tmp/w12.out || fail "disk0: a block dd wrote before the crash is not on the medium"
ok "disk0: driver killed under dd: $out blocks counted, all on the medium; $(grep -o 'replay [0-9]* windows.*' $M/events || echo 'nothing to replay')"

# serial: QEMU decodes the FTDI baud divisor itself; bulk OUT reaches the
# chardev (the host checks the file).  QEMU 7.2's usb-serial never hands
# pipe-chardev input to bulk IN: the IN direction is the umockdev model's.
ser=$M/serial0
[ "$(cat $ser/line)" = "9600 8N1" ] || fail "$ser/line: $(cat $ser/line)"
echo "115200 8N1" > $ser/line || fail "write $ser/line"
[ "$(cat $ser/line)" = "115384 8N1" ] || fail "$ser/line after 115200: $(cat $ser/line)"
echo "2500000 8N1" > $ser/line 2>/dev/null && fail "2500000 Bd accepted"
echo "dtr off" > $ser/ctl && echo "break 20" > $ser/ctl || fail "$ser/ctl"
grep -q "^dtr off" $ser/status || fail "$ser/status: $(cat $ser/status)"
ok "$ser: line $(cat $ser/line), $(tr '\n' ' ' < $ser/status)"
echo "plugfs wrote this through a real kernel" > $ser/data || fail "write to $ser/data"
ok "wrote to $ser/data"

# still: QEMU's usb-mtp over a host folder (one storage, read-write): every
# file listed with its size, copied out byte-identical (md5 as on the host),
# one read at an offset, and an upload the host finds in its folder.
st=$(ls -d $M/still0/store-* | head -1)
[ -d "$st" ] || fail "still0 has no storage: $(ls $M/still0)"
(cd $st && find . -type f -exec md5sum {} + | sed 's|  \./|  |' | sort -k2) > /tmp/mtp.md5
cmp -s /tmp/mtp.md5 /mtp.md5 || fail "still0 files differ from the host folder: $(cat /tmp/mtp.md5)"
[ "$(stat -c %s $st/clip.mov)" = 3145728 ] || fail "clip.mov st_size $(stat -c %s $st/clip.mov)"
ok "still0: $(basename $st): $(wc -l < /mtp.md5) files, sizes and md5 equal the host folder"
[ "$(dd if=$st/clip.mov bs=1000 skip=2000 count=3 2>/dev/null | md5sum)" = \
  "$(tail -c +2000001 $st/clip.mov | head -c 3000 | md5sum)" ] || fail "still0 read at an offset"
echo "uploaded by plugfs through MTP" > $st/DCIM/still-upload.txt || fail "upload to $st/DCIM"
[ "$(cat $st/DCIM/still-upload.txt)" = "uploaded by plugfs through MTP" ] || fail "uploaded file reads back wrong"
ok "still0: dd skip= read, and DCIM/still-upload.txt uploaded and read back"

# usb (generic), on the smart-card reader: GET_DESCRIPTOR(DEVICE) through ep0
# equals the first 18 bytes of descriptors.
exec 3<>$M/usb0/ep0
printf '\200\006\000\001\000\000\022\000' >&3
got=$(od -An -tx1 <&3 | tr -d ' \n')
exec 3<&-
want=$(head -c 18 $M/usb0/descriptors | od -An -tx1 | tr -d ' \n')
[ "$got" = "$want" ] || fail "ep0 GET_DESCRIPTOR gave $got, want $want"
ok "usb0 ep0 GET_DESCRIPTOR = $got"

# Kill usb0's driver; nobody else notices, usb0 comes back.
pid=$(field usb0 7)
kill -9 "$pid"
until_true '[ "$(field usb0 5)" = running ] && [ "$(field usb0 7)" != "$pid" ]'
[ "$(cat $M/usb0/restarts)" = 1 ] || fail "restarts $(cat $M/usb0/restarts)"
for f in hid0 hid1 serial0 still0; do
	[ "$(cat $M/$f/restarts)" = 0 ] || fail "$f restarted too"
done
[ "$(cat $M/disk0/restarts)" = 1 ] || fail "disk0 restarted again (only the kill under dd)"
grep -q "usb0 crash SIGKILL" $M/events || fail "no crash event"
ok "$(grep 'usb0 restart 1' $M/events)"
cmp -s $M/usb0/descriptors /sys/bus/usb/devices/$(cat $M/usb0/port)/descriptors || fail "after restart"

# Hotplug through QEMU's monitor (tests/rig/monitor): the tablet goes, a
# reader blocked on its input gets ENODEV, and it comes back under its name.
tabname=$(basename $tab)
tabport=$(cat $tab/port)
dd if=$tab/input bs=64 count=1 of=/dev/null 2>/tmp/dd.err &
ddpid=$!
echo "rig: unplug the tablet"
until_true '! grep -q "^$tabname " $M/devices'
wait $ddpid && fail "a read of the unplugged tablet's input succeeded"
grep -q "No such device" /tmp/dd.err || fail "blocked input read after unplug: $(cat /tmp/dd.err)"
[ -e $tab ] && fail "$tab still there"
ok "tablet unplugged: $(grep "$tabname detach" $M/events | tail -1 | cut -d' ' -f2-); blocked reader: $(cat /tmp/dd.err)"
echo "rig: plug the tablet back"
until_true '[ "$(field $tabname 5)" = running ]'
[ "$(cat $tab/port)" = "$tabport" ] || ok "(the tablet came back on port $(cat $tab/port))"
grep -q Tablet $tab/product || fail "$tab is not the tablet: $(cat $tab/product)"
ok "tablet back as $tabname: $(grep "$tabname attach" $M/events | tail -1 | cut -d' ' -f2-)"

# On a real kernel the allow-list must have been enough for all of the above.
! grep -q SIGSYS $M/events || fail "a driver died of SIGSYS: $(grep SIGSYS $M/events)"
ok "no seccomp kill (SIGSYS) on the real kernel"
umount $M || fail "umount"
# umount returns once the kernel lets go; the daemon then stops its drivers and exits.
until_true '[ -z "$(pidof plugfs-driver plugfs)" ]'
ok "unmounted, no process left"
