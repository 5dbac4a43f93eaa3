# Board: x86-64 PCs with UEFI, and QEMU/KVM for the image test (make image-test).
# Boot: systemd-boot as the removable-media loader (EFI/BOOT/BOOTX64.EFI) on the FAT boot
# partition, with the kernel and initramfs beside it.
# shellcheck shell=bash
# shellcheck source=images/boards/efi.sh
. "$(dirname "${BASH_SOURCE[0]}")/efi.sh"
ARCH=amd64
PIP_ARCH=x86_64
BOARD_COMPONENTS="contrib,non-free-firmware"
BOARD_PACKAGES=(linux-image-amd64 systemd-boot-efi)
KERNEL_OPTIONS="console=tty1 console=ttyS0,115200"

# board_boot_files ROOTFS BOOTDIR: what the boot partition holds.
board_boot_files() {
    efi_boot_files "$1" "$2" x64 X64
}
