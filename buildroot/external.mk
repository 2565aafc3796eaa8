include $(sort $(wildcard $(BR2_EXTERNAL_ZENNET_PATH)/package/*/*.mk))

# The GPT disk boots on BIOS through syslinux's gptmbr.bin (Buildroot installs only mbr.bin).
SYSLINUX_IMAGES-$(BR2_TARGET_SYSLINUX_MBR) += bios/mbr/gptmbr.bin
