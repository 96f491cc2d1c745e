#!/usr/bin/env bash
# Installs ichd on the box, as root: the ichd user and groups, the binary, the model, the board's config, the
# systemd units and udev rules, and the folders under /var/lib/ichd; then reloads systemd and enables the units.
#
#   sudo board/install.sh --board raspberrypi5            # on the box, after `make build` there
#   board/install.sh --board raspberrypi4 --dry-run       # lay everything out under a temporary root, print it
#   board/install.sh --board raspberrypi4 --prefix /tmp/r # lay it out under /tmp/r (DESTDIR-like), no system changes
#
# With --prefix or --dry-run nothing outside the root is touched: no users, no chown, no systemctl, no udevadm;
# what would be done is printed instead. An existing /etc/ichd/ichd.toml is never overwritten: the board's file
# is put beside it as ichd.toml.new and the script says so.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
board=""
root=""
dry_run=0
binary="$repo/.build/release/ichd"
model="$repo/models/ichd-phantom-resnet18.ichm"

usage() {
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    echo "options: --board raspberrypi4|raspberrypi5  --prefix DIR  --dry-run  --binary PATH  --model PATH"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --board) board=${2:-}; shift 2 ;;
        --board=*) board=${1#*=}; shift ;;
        --prefix) root=${2:-}; shift 2 ;;
        --prefix=*) root=${1#*=}; shift ;;
        --dry-run) dry_run=1; shift ;;
        --binary) binary=${2:-}; shift 2 ;;
        --model) model=${2:-}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done

case "$board" in
    raspberrypi4|raspberrypi5) ;;
    "") echo "install: --board raspberrypi4|raspberrypi5 is required" >&2; exit 2 ;;
    *) echo "install: unknown board '$board' (raspberrypi4, raspberrypi5; the sim board runs from the tree)" >&2; exit 2 ;;
esac

if [ "$dry_run" = 1 ] && [ -z "$root" ]; then
    root=$(mktemp -d "${TMPDIR:-/tmp}/ichd-install.XXXXXX")
fi
# On the real system every step runs; under a root (--prefix / --dry-run) the system-wide ones are only printed.
system=1
[ -n "$root" ] && system=0
root=${root%/}

say() { echo "install: $*"; }
system_step() {
    if [ "$system" = 1 ]; then
        say "run: $*"
        "$@"
    else
        say "would run: $*"
    fi
}

[ -f "$binary" ] || { echo "install: $binary not found: build it first with \`make build\` (on the box: an aarch64 build)" >&2; exit 1; }
[ -f "$model" ] || { echo "install: model $model not found" >&2; exit 1; }
config="$repo/board/$board/ichd.toml"
[ -f "$config" ] || { echo "install: $config not found" >&2; exit 1; }
if [ "$system" = 1 ] && [ "$(id -u)" != 0 ]; then
    echo "install: run as root (or use --dry-run / --prefix DIR to lay it out elsewhere)" >&2
    exit 1
fi

# Users and groups: a system user ichd, in gpio (GPIO chips, udev rule) and dialout (serial ports).
for group in gpio dialout; do
    if [ "$system" = 1 ]; then
        getent group "$group" >/dev/null || system_step groupadd --system "$group"
    else
        say "would ensure group $group exists"
    fi
done
if [ "$system" = 1 ]; then
    if ! getent passwd ichd >/dev/null; then
        system_step useradd --system --user-group --home-dir /var/lib/ichd --no-create-home \
            --shell /usr/sbin/nologin --groups gpio,dialout ichd
    else
        system_step usermod --append --groups gpio,dialout ichd
    fi
else
    say "would ensure system user ichd (groups ichd, gpio, dialout; home /var/lib/ichd; no login shell)"
fi

# put MODE SOURCE DEST: install one file under the root.
put() {
    install -D -m "$1" "$2" "$root$3"
    say "installed $3 (mode $1)"
}

put 0755 "$binary" /usr/local/bin/ichd
put 0644 "$model" /usr/share/ichd/models/ichd-phantom-resnet18.ichm
put 0644 "$repo/board/README.md" /usr/share/doc/ichd/README.md

# The config: never overwrite one that is there (an installed box has its own line offsets, port, budget).
if [ -e "$root/etc/ichd/ichd.toml" ]; then
    put 0644 "$config" /etc/ichd/ichd.toml.new
    say "KEPT the existing /etc/ichd/ichd.toml; the $board defaults are in /etc/ichd/ichd.toml.new (compare and merge by hand)"
else
    put 0644 "$config" /etc/ichd/ichd.toml
fi

put 0644 "$repo/board/systemd/ichd.service" /etc/systemd/system/ichd.service
put 0644 "$repo/board/systemd/ichd-storescp.service" /etc/systemd/system/ichd-storescp.service
put 0644 "$repo/board/udev/60-ichd-gpio.rules" /etc/udev/rules.d/60-ichd-gpio.rules
put 0644 "$repo/board/udev/61-ichd-serial.rules" /etc/udev/rules.d/61-ichd-serial.rules

# Folders: the daemon and storescp write here (the only writable path under ProtectSystem=strict).
for dir in /var/lib/ichd /var/lib/ichd/drop /var/lib/ichd/archive /var/lib/ichd/quarantine /var/lib/ichd/state; do
    install -d -m 0750 "$root$dir"
    if [ "$system" = 1 ]; then
        chown ichd:ichd "$dir"
        say "created $dir (ichd:ichd, 0750)"
    else
        say "created $dir (0750; would chown ichd:ichd)"
    fi
done

# Runtime libraries the binary links dynamically (the Swift runtime is linked in statically).
if [ "$system" = 1 ] && command -v ldd >/dev/null; then
    missing=$(ldd /usr/local/bin/ichd 2>/dev/null | awk '/not found/ {print $1}' || true)
    if [ -n "$missing" ]; then
        say "WARNING: libraries not found: $missing"
        say "install them: apt-get install dcmtk libdcmtk17 libturbojpeg0 libgpiod2 libsqlite3-0"
    fi
    command -v storescp >/dev/null || say "WARNING: storescp not found (apt-get install dcmtk): ichd-storescp.service needs it"
fi

system_step udevadm control --reload-rules
system_step udevadm trigger --subsystem-match=gpio --subsystem-match=tty
system_step systemctl daemon-reload
system_step systemctl enable ichd.service ichd-storescp.service
say "done. Before service: wire the lamps as board/README.md says, then commission:"
say "  ichd selftest --model /usr/share/ichd/models/ichd-phantom-resnet18.ichm --work /var/tmp/ichd-selftest"
say "  systemctl start ichd ichd-storescp && journalctl -u ichd -f"
if [ "$system" = 0 ]; then
    say "laid out under $root:"
    (cd "$root" && find . -mindepth 1 | sort | sed 's|^\.|  |')
fi
