#!/bin/bash
# The kiosk's OS image: Debian bookworm from Debian's archive with mmdebstrap, the agent in its
# A/B slots (made by the project's own bundle builder), a read-only root under a RAM overlay,
# one writable data partition. No loop device and no mount: the file systems are made from
# directories (mkfs.ext4 -d, mtools), so it runs in a container as root.
#
#   images/build-image.sh --board raspi-arm64 --out build/image      # the kiosk (Raspberry Pi 3/4/400/CM4)
#   images/build-image.sh --board pc-amd64 --out build/image         # PCs, and the QEMU/KVM test
#
# Reproducible from a clean checkout: SOURCE_DATE_EPOCH (default: the last commit's time) sets
# every timestamp, file system UUIDs and volume ids are derived from it, and the Debian and PyPI
# versions are pinned by MIRROR (use a snapshot.debian.org URL for a bit-identical rebuild) and
# the dependency lock. The board-specific parts (kernel, firmware, boot files, camera stack) are
# all in images/boards/<board>.sh.
set -euo pipefail

# Everything in main: bash reads a script as it runs, and this one runs for many minutes.
main() {

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$(dirname "$HERE")"
BOARD=""
OUT=""
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
PYTHON="${PYTHON:-$PROJECT/.venv/bin/python}"
SIGNING_KEY="${SOHOA_SIGNING_KEY:-}"
DATA_SIZE_MB="${DATA_SIZE_MB:-768}"
BOOT_SIZE_MB=256

REUSE_ROOTFS=0
usage() { echo "usage: $0 --board raspi-arm64|pc-amd64 --out DIR [--reuse-rootfs]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --board) BOARD="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        # Development: keep the root file system of the last run (mmdebstrap is the long step)
        # and only refresh the project's files in it.
        --reuse-rootfs) REUSE_ROOTFS=1; shift ;;
        *) usage ;;
    esac
done
[ -n "$BOARD" ] && [ -n "$OUT" ] || usage
OUT="$(realpath -m "$OUT")"
case "$OUT/" in "$PROJECT"/*)
    # setuptools walks the project (following links) when the bundle builds the wheel: a root
    # file system in there would be walked, host links and all.
    echo "$0: --out must be outside the checkout ($PROJECT)" >&2; exit 2 ;;
esac
[ -f "$HERE/boards/$BOARD.sh" ] || { echo "no board $BOARD in $HERE/boards" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$0: run as root (mmdebstrap --mode=root, file ownership in the image)" >&2; exit 2; }
# shellcheck source=images/boards/pc-amd64.sh
. "$HERE/boards/$BOARD.sh"   # sets ARCH, BOARD_PACKAGES, BOARD_COMPONENTS; defines board_boot_files

if ! arch-test "$ARCH" >/dev/null 2>&1; then
    # A foreign root file system (arm64 on a PC): its programs run through qemu-user-static.
    mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable "qemu-$PIP_ARCH"
    arch-test "$ARCH" >/dev/null || { echo "$0: cannot run $ARCH programs here (qemu-user-static)" >&2; exit 2; }
fi
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$PROJECT" log -1 --format=%ct)}"
export E2FSPROGS_FAKE_TIME="$SOURCE_DATE_EPOCH"
VERSION="$("$PYTHON" -c 'import protocol; print(protocol.__version__)')"
WORK="$OUT/$BOARD"
IMAGE="$OUT/sohoa-$VERSION-$BOARD.img"
# Stable ids from the epoch: same inputs, same image.
SEED="$(printf '%s' "$SOURCE_DATE_EPOCH-$BOARD" | sha256sum | cut -c1-32)"
uuid() { printf '%s-%s-4%s-8%s-%s' "${1:0:8}" "${1:8:4}" "${1:13:3}" "${1:17:3}" "${1:20:12}"; }
ROOT_UUID="$(uuid "$SEED")"
DATA_UUID="$(uuid "$(printf '%s' "$SEED-data" | sha256sum | cut -c1-32)")"
BOOT_ID="${SEED:0:8}"

step() { echo "== $(date -u +%H:%M:%S) $*"; }
if [ "$REUSE_ROOTFS" = 1 ] && [ -d "$WORK/rootfs/usr/lib/sohoa/venv" ]; then
    find "$WORK" -mindepth 1 -maxdepth 1 ! -name rootfs -exec rm -rf {} +
else
    REUSE_ROOTFS=0
    rm -rf "$WORK"
fi
mkdir -p "$WORK"

step "source: commit $(git -C "$PROJECT" rev-parse --short HEAD) (what is not committed is not in the image)"
SRC="$WORK/src"
mkdir -p "$SRC"
git -C "$PROJECT" archive --format=tar HEAD | tar -x -C "$SRC"

step "bundle: the agent's wheel, signed, by images.bundle"
if [ -z "$SIGNING_KEY" ]; then
    # A development image: a key made for this build (never for kiosks in the field).
    "$PYTHON" -m images.bundle keygen --out "$WORK/keys" >/dev/null
    SIGNING_KEY="$WORK/keys/update_signing.key"
    echo "warning: no SOHOA_SIGNING_KEY: signed with a throw-away key in $WORK/keys" >&2
fi
PUBLIC_KEY="${SIGNING_KEY%.key}.pub"
"$PYTHON" -m images.bundle build --kind app --version "$VERSION" --key "$SIGNING_KEY" --out "$WORK/dist" \
    --project "$SRC" >/dev/null
BUNDLE="$WORK/dist/sohoa-app-$VERSION.bundle"

step "data partition: slot A from the bundle (verified as a kiosk verifies it)"
mkdir -p "$WORK/data"
"$PYTHON" -m images.recipe seed --bundle "$BUNDLE" --public-key "$PUBLIC_KEY" --root "$WORK/data/app"
mkdir -p "$WORK/data/config" "$WORK/data/state" "$WORK/data/timesync"
chmod 0700 "$WORK/data/config"

step "dependencies: pinned wheels for $ARCH (PyPI)"
"$PYTHON" -m images.recipe lock --out "$WORK/wheels/requirements.txt"
PLATFORMS=()
for glibc in $(seq 17 36); do PLATFORMS+=(--platform "manylinux_2_${glibc}_$PIP_ARCH"); done  # bookworm: glibc 2.36
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
    --abi cp311 --abi abi3 --abi none "${PLATFORMS[@]}" --platform "manylinux2014_$PIP_ARCH" \
    -d "$WORK/wheels" -r "$WORK/wheels/requirements.txt"

if [ "$REUSE_ROOTFS" = 1 ]; then
    step "root file system: reused; the project's files refreshed"
    cp -a "$SRC/images/rootfs/." "$WORK/rootfs/"
    install -D -m 0644 "$SRC/images/launcher.py" "$WORK/rootfs/usr/lib/sohoa/launcher.py"
    install -D -m 0644 "$PUBLIC_KEY" "$WORK/rootfs/etc/sohoa/update_signing.pub"
    # The lock may have moved since the root was made: the venv gets exactly its versions again.
    rm -rf "$WORK/rootfs/tmp/wheels"
    cp -a "$WORK/wheels" "$WORK/rootfs/tmp/wheels"
    chroot "$WORK/rootfs" /usr/lib/sohoa/venv/bin/python -m pip install -q --no-index --no-deps --no-compile \
        --find-links /tmp/wheels -r /tmp/wheels/requirements.txt
    rm -rf "$WORK/rootfs/tmp/wheels"
    chroot "$WORK/rootfs" update-initramfs -u -k all
else
    step "root file system: mmdebstrap $SUITE $ARCH"
    PACKAGES=(
        systemd-sysv systemd-timesyncd systemd-resolved libpam-systemd udev dbus kmod iproute2 ca-certificates
        initramfs-tools e2fsprogs dosfstools
        python3 python3-venv python3-sane libsane1 sane-utils
        chromium cage fonts-noto-core mosquitto-clients tesseract-ocr tesseract-ocr-vie tesseract-ocr-osd
        "${BOARD_PACKAGES[@]}"
    )
    nice -n 19 mmdebstrap --mode=root --arch="$ARCH" --variant=minbase \
        --components="main,${BOARD_COMPONENTS}" --include="$(IFS=,; echo "${PACKAGES[*]}")" \
        --aptopt='Acquire::Retries "5"' --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/man/*' \
        --setup-hook='mkdir -p "$1/etc/default" "$1/boot/firmware"' \
        --setup-hook="[ ! -f '$SRC/images/boards/$BOARD.defaults' ] || cp '$SRC/images/boards/$BOARD.defaults' \"\$1/etc/default/raspi-firmware\"" \
        --customize-hook="cp -a '$SRC/images/rootfs/.' \"\$1/\"" \
        --customize-hook="install -D -m 0644 '$SRC/images/launcher.py' \"\$1/usr/lib/sohoa/launcher.py\"" \
        --customize-hook="install -D -m 0644 '$PUBLIC_KEY' \"\$1/etc/sohoa/update_signing.pub\"" \
        --customize-hook="install -D -m 0644 '$SRC/README.md' \"\$1/usr/share/doc/sohoa/README.md\"" \
        --customize-hook="cp -a '$WORK/wheels' \"\$1/tmp/wheels\"" \
        --customize-hook='chroot "$1" python3 -m venv --system-site-packages /usr/lib/sohoa/venv' \
        --customize-hook='chroot "$1" /usr/lib/sohoa/venv/bin/python -m pip install -q --no-index --no-deps --no-compile --find-links /tmp/wheels -r /tmp/wheels/requirements.txt' \
        --customize-hook='rm -rf "$1/tmp/wheels"' \
        --customize-hook='chroot "$1" useradd --system --create-home --home-dir /home/kiosk --groups video,render,input --shell /usr/sbin/nologin kiosk' \
        --customize-hook='chroot "$1" systemctl enable sohoa-agent.service sohoa-firstboot.service sohoa-kiosk.service systemd-networkd.service systemd-resolved.service systemd-timesyncd.service systemd-time-wait-sync.service' \
        --customize-hook='chroot "$1" systemctl set-default graphical.target' \
        --customize-hook='echo sohoa-kiosk > "$1/etc/hostname"' \
        --customize-hook='chroot "$1" update-initramfs -u -k all' \
        "$SUITE" "$WORK/rootfs" "$MIRROR"
fi

# timesyncd saves its clock on the data partition (fstab's bind mount): its own user writes it.
TIMESYNC_OWNER="$(awk -F: '$1 == "systemd-timesync" { print $3 ":" $4 }' "$WORK/rootfs/etc/passwd")"
[ -z "$TIMESYNC_OWNER" ] || chown "$TIMESYNC_OWNER" "$WORK/data/timesync"

step "boot partition files for $BOARD"
mkdir -p "$WORK/boot"
board_boot_files "$WORK/rootfs" "$WORK/boot"
# The boot files leave the root: the boot partition is mounted over /boot/firmware.
find "$WORK/rootfs/boot/firmware" -mindepth 1 -delete
# Same timestamps for every build.
find "$WORK/rootfs" "$WORK/boot" "$WORK/data" -newermt "@$SOURCE_DATE_EPOCH" -print0 \
    | xargs -0r touch --no-dereference --date="@$SOURCE_DATE_EPOCH"

step "file systems"
ROOT_MB=$(( $(du -sm --apparent-size "$WORK/rootfs" | cut -f1) * 12 / 10 + 200 ))
mkfs_ext4() {  # label uuid dir image size_mb
    rm -f "$4"
    truncate -s "${5}M" "$4"
    mkfs.ext4 -q -L "$1" -U "$2" -E "hash_seed=$2,root_owner=0:0" -O '^metadata_csum_seed' -d "$3" "$4"
}
mkfs_ext4 sohoa-root "$ROOT_UUID" "$WORK/rootfs" "$WORK/root.ext4" "$ROOT_MB"
mkfs_ext4 sohoa-data "$DATA_UUID" "$WORK/data" "$WORK/data.ext4" "$DATA_SIZE_MB"
rm -f "$WORK/boot.vfat"
truncate -s "${BOOT_SIZE_MB}M" "$WORK/boot.vfat"
mkfs.vfat -F 32 -n SOHOA-BOOT -i "$BOOT_ID" --invariant "$WORK/boot.vfat" >/dev/null
MTOOLS_SKIP_CHECK=1 mcopy -s -p -m -i "$WORK/boot.vfat" "$WORK/boot/"* ::/

step "disk image: MBR, boot (FAT32) + root (ext4, read-only) + data (ext4)"
P1=4; P2=$(( P1 + BOOT_SIZE_MB )); P3=$(( P2 + ROOT_MB )); END=$(( P3 + DATA_SIZE_MB ))
rm -f "$IMAGE"
truncate -s "$(( END + 1 ))M" "$IMAGE"
sfdisk -q --no-reread --no-tell-kernel "$IMAGE" <<EOF
label: dos
label-id: 0x${SEED:8:8}
unit: sectors
start=$(( P1 * 2048 )), size=$(( BOOT_SIZE_MB * 2048 )), type=c, bootable
start=$(( P2 * 2048 )), size=$(( ROOT_MB * 2048 )), type=83
start=$(( P3 * 2048 )), size=$(( DATA_SIZE_MB * 2048 )), type=83
EOF
dd if="$WORK/boot.vfat" of="$IMAGE" bs=1M seek="$P1" conv=notrunc,sparse status=none
dd if="$WORK/root.ext4" of="$IMAGE" bs=1M seek="$P2" conv=notrunc,sparse status=none
dd if="$WORK/data.ext4" of="$IMAGE" bs=1M seek="$P3" conv=notrunc,sparse status=none
rm -f "$WORK/boot.vfat" "$WORK/root.ext4" "$WORK/data.ext4"
sha256sum "$IMAGE" | tee "$IMAGE.sha256"
step "done: $IMAGE ($(du -h --apparent-size "$IMAGE" | cut -f1); flash with: dd if=$IMAGE of=/dev/sdX bs=4M conv=fsync)"
}

main "$@"
