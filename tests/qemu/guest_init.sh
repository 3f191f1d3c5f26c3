#!/bin/sh
# /init (PID 1) of the vdagent-bridge test guest; built into the initramfs by guest_image.py.
#
# It brings up exactly what the real Linux SPICE agent needs, with no udev, systemd or D-Bus:
#   devtmpfs/proc/sys/tmpfs -> Xvfb :0 (in the background) -> virtio modules
#   -> /dev/virtio-ports/<name> links -> the command channel (so a half-booted guest can still
#   be inspected) -> fake-uinput FIFO reader -> spice-vdagentd -> evilwm (window manager)
#   -> spice-vdagent (session agent).
#
# Logs (readable through the command channel): /tmp/vdagentd.log (daemon, G_MESSAGES_DEBUG=all,
# -d -d), /tmp/vdagent.log (session agent), /tmp/xvfb.log, /tmp/wm.log; raw fake-uinput records (24-byte
# struct input_event each) accumulate in /tmp/uinput.bin. This script's own progress lines go to
# the serial console (the host's console.log).
#
# Command channel protocol (virtserialport @CMD_PORT@; the host side is tests/qemu/vm.py):
#   host -> guest:  "VDBREQ <id> <script_len> <stdin_len> <timeout_s>\n" <script> <stdin>
#   guest -> host:  "\nVDBRSP <id> <rc> <stdout_len> <stderr_len>\n" <stdout> <stderr>
# The script runs under `sh` with DISPLAY=:0, its stdin being the <stdin> bytes, killed after
# <timeout_s> seconds (rc 137). One request at a time; lines not starting with VDBREQ are skipped
# (resync). While no host is connected, reads return EOF and writes block until one connects.

export PATH=/usr/sbin:/usr/bin
export HOME=/root LANG=C.UTF-8 DISPLAY=:0

mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run

log() {
    read -r up _ </proc/uptime
    echo "vdb-init[$up]: $*"
}
log "mounted"

AGENT_PORT=@AGENT_PORT@
CMD_PORT=@CMD_PORT@

# Xvfb first: it needs nothing else and takes a while (keymap compile) under TCG.
mkdir -p /tmp/.X11-unix /var/lib/xkb /run/spice-vdagentd /root
chmod 1777 /tmp/.X11-unix
mkdir -p -m 700 /run/user/0
Xvfb :0 -screen 0 1024x768x24 -nolisten tcp -noreset >/tmp/xvfb.log 2>&1 &

for m in $(cat /etc/vdb/modules); do
    insmod "/lib/modules/vdb/$m.ko" || log "insmod $m failed"
done

mkdir -p /dev/virtio-ports
n=0
while :; do
    for d in /sys/class/virtio-ports/*; do
        [ -r "$d/name" ] || continue
        name=$(cat "$d/name")
        [ -n "$name" ] && ln -sf "../${d##*/}" "/dev/virtio-ports/$name"
    done
    [ -e "/dev/virtio-ports/$AGENT_PORT" ] && [ -e "/dev/virtio-ports/$CMD_PORT" ] && break
    n=$((n + 1))
    if [ $n -ge 400 ]; then
        log "virtio ports missing after 20 s: $(ls /sys/class/virtio-ports 2>&1)"
        break
    fi
    sleep 0.05
done
log "ports: $(ls /dev/virtio-ports | tr '\n' ' ')"

# ---------------------------------------------------------------- command channel
cmd_loop() {
    dir=/tmp/vdb-cmd
    mkdir -p "$dir"
    # Opened once, read/write, for the guest's whole life: closing the port would discard
    # bytes the host already sent.
    exec 3<>"/dev/virtio-ports/$CMD_PORT"
    idle=0.02
    while :; do
        magic='' id='' slen='' ilen='' tmo=''
        if ! read -r magic id slen ilen tmo <&3; then
            # EOF: no host connected.  Poll, slower and slower (each poll costs a fork
            # under TCG).
            sleep $idle
            case $idle in 0.02) idle=0.05 ;; 0.05) idle=0.1 ;; *) idle=0.2 ;; esac
            continue
        fi
        idle=0.02
        [ "$magic" = VDBREQ ] || continue
        case "$id$slen$ilen$tmo" in *[!0-9]*|'') continue ;; esac
        : >"$dir/$id.sh"
        : >"$dir/$id.in"
        [ "$slen" -gt 0 ] && dd bs=65536 count="$slen" iflag=count_bytes,fullblock \
            of="$dir/$id.sh" <&3 2>/dev/null
        [ "$ilen" -gt 0 ] && dd bs=65536 count="$ilen" iflag=count_bytes,fullblock \
            of="$dir/$id.in" <&3 2>/dev/null
        (
            cd /root
            exec 3<&-
            export DISPLAY=:0 XDG_RUNTIME_DIR=/run/user/0
            exec timeout -s KILL "$tmo" sh "$dir/$id.sh"
        ) <"$dir/$id.in" >"$dir/$id.out" 2>"$dir/$id.err"
        rc=$?
        olen=$(stat -c %s "$dir/$id.out")
        elen=$(stat -c %s "$dir/$id.err")
        {
            printf '\nVDBRSP %s %s %s %s\n' "$id" "$rc" "$olen" "$elen"
            cat "$dir/$id.out" "$dir/$id.err"
        } >&3
        rm -f "$dir/$id.sh" "$dir/$id.in" "$dir/$id.out" "$dir/$id.err"
    done
}
cmd_loop &
log "command channel up"

# ---------------------------------------------------------------- agent
# Fake uinput: the daemon writes raw input_event records; a reader holding the FIFO open
# read/write means the daemon's (re)opens never block and never see a closed pipe.
mkfifo /tmp/uinput
cat 0<>/tmp/uinput >/tmp/uinput.bin &

G_MESSAGES_DEBUG=all spice-vdagentd -x -d -d -X -f -u /tmp/uinput >/tmp/vdagentd.log 2>&1 &

n=0
until [ -S /tmp/.X11-unix/X0 ] && xprop -root >/dev/null 2>&1; do
    n=$((n + 1))
    if [ $n -ge 400 ]; then log "Xvfb did not start:"; cat /tmp/xvfb.log; break; fi
    sleep 0.05
done
log "Xvfb up"
# A window manager: without one the session agent polls 9 x 100 ms for its name before it
# reports its resolution to the daemon (GDK re-reads the root's _NET_SUPPORTING_WM_CHECK at
# most every 15 s, so it must be there before the agent starts).  evilwm is tiny and grabs no
# input the tests use; a failure only costs the agent that second.
evilwm -fn fixed >/tmp/wm.log 2>&1 &
wm=$!
n=0
until xprop -root _NET_SUPPORTING_WM_CHECK 2>/dev/null | grep -q 'window id'; do
    n=$((n + 1))
    if [ $n -ge 40 ] || ! kill -0 $wm 2>/dev/null; then
        log "window manager not up (the session agent will wait 0.9 s):"
        cat /tmp/wm.log
        break
    fi
    sleep 0.05
done

n=0
until [ -S /run/spice-vdagentd/spice-vdagent-sock ]; do
    n=$((n + 1))
    if [ $n -ge 400 ]; then log "spice-vdagentd did not start:"; cat /tmp/vdagentd.log; break; fi
    sleep 0.05
done

# Files the host sends land in /tmp/xfer (-f), and nothing opens them afterwards (-o 0).
mkdir -p /tmp/xfer
(
    export DISPLAY=:0 XDG_RUNTIME_DIR=/run/user/0 NO_AT_BRIDGE=1 GDK_BACKEND=x11 \
        G_MESSAGES_DEBUG=all DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent
    exec spice-vdagent -x -d -f /tmp/xfer -o 0
) >/tmp/vdagent.log 2>&1 &
log "session agent started"

# PID 1 must never exit (panic=-1 would reboot, and -no-reboot then stops QEMU).
while :; do
    sleep 3600
done
