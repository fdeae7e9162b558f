# Shell helpers shared by the rig's guest scripts (guest.sh, usbip.sh),
# sourced inside the guest as /lib.sh after M (the mountpoint) is set.
# WAIT_TICKS: how many 10 ms steps until_true waits at most.
fail() { echo "rig: FAIL: $*"; cat $M/events 2>/dev/null; umount $M 2>/dev/null; exit 1; }
ok() { echo "rig: ok: $*"; }
field() { awk -v n="$1" -v f="$2" '$1 == n { print $f }' $M/devices; }
# Waits (bounded) until a shell condition holds.
until_true() {
	i=0
	until eval "$1"; do
		i=$((i + 1)); [ $i -lt "${WAIT_TICKS:-2000}" ] || fail "gave up waiting for: $1"
		usleep 10000 2>/dev/null || sleep 0.01
	done
}
