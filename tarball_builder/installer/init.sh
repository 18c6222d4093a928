#!/bin/sh
# /init of the metalstream installer environment (PID 1 inside the initramfs).
#
# Mounts the kernel file systems, lets udev load drivers for disks and network cards, asks DHCP for
# an address on every wired NIC, then runs the deployer agent with the service URL and token from
# the kernel command line (metalstream.server=URL metalstream.token=TOKEN; metalstream.mode=inspect: the agent
# reports the machine's hardware facts and powers off).
# Kernel command line switches:
#   metalstream.shell   start a root shell on the console instead of the agent (debugging)
#   metalstream.debug   trace this script (set -x)
# If anything fails (no network, no server given, agent failure) it prints why and starts a root
# shell on the console; PID 1 never exits (that would panic the kernel).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=linux

mkdir -p /proc /sys /dev /run /tmp
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o mode=0755,nosuid devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=0620 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev,mode=1777 shm /dev/shm
mount -t tmpfs -o nosuid,nodev,mode=0755 run /run
exec </dev/console >/dev/console 2>&1

say() { echo "metalstream-init: $*"; }

rescue_shell() {
    say "$*"
    say "starting a root shell on the console (exit it to start another one)"
    while true; do
        setsid -c -w /bin/sh -l || /bin/sh
        sleep 1
    done
}

server= token= mode= want_shell=
for word in $(cat /proc/cmdline); do
    case "$word" in
        metalstream.server=*) server=${word#*=} ;;
        metalstream.token=*) token=${word#*=} ;;
        metalstream.mode=*) mode=${word#*=} ;;
        metalstream.shell|metalstream.shell=1) want_shell=1 ;;
        metalstream.debug|metalstream.debug=1) set -x ;;
    esac
done
say "starting ($(uname -r))"
[ -f /etc/hostname ] && hostname -F /etc/hostname

say "starting udev"
/lib/systemd/systemd-udevd --daemon --resolve-names=never || rescue_shell "systemd-udevd did not start"
udevadm trigger --type=subsystems --action=add
udevadm trigger --type=devices --action=add
udevadm settle --timeout=60 || say "udev did not settle in 60 s; continuing"
modprobe -qa loop efivarfs
if [ -d /sys/firmware/efi/efivars ]; then
    mount -t efivarfs efivarfs /sys/firmware/efi/efivars || say "could not mount efivarfs"
fi
say "udev settled"

ip link set lo up
nics=
for dev in /sys/class/net/*; do
    nic=${dev##*/}
    # Wired physical NICs only: a device link (not virtual), no wireless directory.
    [ -e "$dev/device" ] || continue
    [ -e "$dev/wireless" ] || [ -e "$dev/phy80211" ] && continue
    nics="$nics $nic"
done
[ -n "$nics" ] || rescue_shell "no wired network interface found (missing driver?)"
say "asking DHCP on:$nics"
pids=
for nic in $nics; do
    ip link set "$nic" up
    udhcpc -i "$nic" -f -q -n -t 10 -T 3 -s /usr/share/metalstream/udhcpc.sh &
    pids="$pids $!"
done
leases=0
for pid in $pids; do
    wait "$pid" && leases=$((leases + 1))
done
[ "$leases" -gt 0 ] || rescue_shell "no DHCP lease on any of:$nics"
say "network up ($leases interface(s) configured)"
ip -brief address

[ -n "$want_shell" ] && rescue_shell "metalstream.shell given: not starting the agent"
[ -n "$server" ] || rescue_shell "no metalstream.server= on the kernel command line"
[ -n "$token" ] || rescue_shell "no metalstream.token= on the kernel command line"

say "starting the deployer agent for $server"
python3 -m metalstream agent --server "$server" --token "$token"
status=$?
if [ "$status" = 0 ] && [ "$mode" = inspect ]; then
    # The agent powers off by itself after reporting the facts; this is the fallback.
    say "inspection reported; powering off"
    sync
    poweroff -f
fi
if [ "$status" = 0 ]; then
    # The agent reboots by itself after a successful install; this is the fallback.
    say "agent finished; rebooting"
    sync
    reboot -f
fi
rescue_shell "the agent exited with status $status"
