# Board: Raspberry Pi 3, 4, 400, CM4 (arm64) from Debian's own packages: linux-image-arm64 and
# raspi-firmware (the GPU firmware, config.txt and cmdline.txt on the FAT boot partition). The
# same boot partition also carries systemd-boot for UEFI (EFI/BOOT/BOOTAA64.EFI), so the image
# boots under QEMU -M virt too (make image-test-arm64). Everything board-specific is here.
#
# Camera: Debian bookworm has no libcamera/picamera2 for the Pi's CSI cameras (Raspberry Pi OS
# does: see images/README.md, "Raspberry Pi OS variant"). USB document cameras work through
# OpenCV (camera type: opencv); CSI cameras need the Raspberry Pi OS variant.
# shellcheck shell=bash
ARCH=arm64
PIP_ARCH=aarch64
BOARD_COMPONENTS="contrib,non-free-firmware"
BOARD_PACKAGES=(linux-image-arm64 raspi-firmware firmware-brcm80211 systemd-boot-efi)
KERNEL_OPTIONS="console=ttyAMA0,115200 console=tty1"

# shellcheck source=images/boards/efi.sh
. "$(dirname "${BASH_SOURCE[0]}")/efi.sh"

board_boot_files() {
    local rootfs="$1" boot="$2"
    # raspi-firmware's kernel hook filled /boot/firmware: start*.elf, fixup*.dat, bcm*.dtb,
    # overlays, vmlinuz, initrd.img, config.txt; cmdline.txt comes from boards/raspi-arm64.defaults.
    cp -a "$rootfs/boot/firmware/." "$boot/"
    [ -f "$boot/config.txt" ] || { echo "raspi-firmware left no config.txt" >&2; return 1; }
    # The hardware watchdog (bcm2835_wdt) that systemd's RuntimeWatchdogSec pets.
    grep -q '^dtparam=watchdog=on' "$boot/config.txt" || echo 'dtparam=watchdog=on' >> "$boot/config.txt"
    printf '%s\n' "root=LABEL=sohoa-root rootfstype=ext4 ro rootwait fsck.repair=yes $KERNEL_OPTIONS quiet" \
        > "$boot/cmdline.txt"
    efi_boot_files "$rootfs" "$boot" aa64 AA64
}
