# UEFI boot files, shared by the boards: systemd-boot as the removable-media loader on the FAT
# boot partition, the kernel and initramfs beside it (QEMU's OVMF and AAVMF boot it the same way).
# shellcheck shell=bash
efi_boot_files() {  # ROOTFS BOOTDIR efi-arch EFI-ARCH
    local rootfs="$1" boot="$2" kernel initrd
    kernel="$(find "$rootfs/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -1)"
    initrd="$(find "$rootfs/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -1)"
    [ -n "$kernel" ] && [ -n "$initrd" ] || { echo "no kernel or initramfs in $rootfs/boot" >&2; return 1; }
    mkdir -p "$boot/EFI/BOOT" "$boot/loader/entries"
    cp "$rootfs/usr/lib/systemd/boot/efi/systemd-boot$3.efi" "$boot/EFI/BOOT/BOOT$4.EFI"
    cp "$kernel" "$boot/vmlinuz"
    cp "$initrd" "$boot/initrd.img"
    printf 'default sohoa.conf\ntimeout 0\neditor no\n' > "$boot/loader/loader.conf"
    printf 'title Sohoa kiosk\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n' \
        "root=LABEL=sohoa-root rootfstype=ext4 ro rootwait fsck.repair=yes $KERNEL_OPTIONS quiet" \
        > "$boot/loader/entries/sohoa.conf"
}
