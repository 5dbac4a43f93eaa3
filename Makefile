# The two commands a new user needs: `make demo` and `make test`. Each sets up what it needs.
.PHONY: setup demo test fuzz lint typecheck bench model docs clean image image-tools image-test

VENV := .venv
PY := $(VENV)/bin/python

setup:
	@scripts/bootstrap.sh all

demo: setup
	@$(PY) -m scripts.demo

test: setup
	@$(PY) -m protocol.docs --check
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy
	@$(PY) -m pytest -q -n 2 --dist loadfile

# The bad-input suite at length: thousands of generated hostile inputs per surface (tens of minutes;
# one property alone outlasts the suite's 300 s per-test limit, hence its own).
fuzz: setup
	@SOHOA_FUZZ=long $(PY) -m pytest -q -m fuzz -p no:cacheprovider --timeout=5400

lint: setup
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy

bench: setup
	@$(PY) -m benchmarks.run

model: setup
	@$(PY) -m pip install -q -e ".[train]"
	@nice $(PY) -m training.train $(if $(CORRECTIONS),--corrections $(CORRECTIONS))

docs: setup
	@$(PY) -m protocol.docs --write

# The kiosk's OS image (images/README.md). Heavy: run as root, not part of `make test`.
BOARD ?= raspi-arm64
# Outside the checkout: the bundle builder packs the project and its build walks the whole tree.
IMAGE_OUT ?= /var/tmp/sohoa-image
IMAGE_TOOLS := mmdebstrap dosfstools mtools fdisk e2fsprogs qemu-user-static binfmt-support arch-test \
	qemu-system-x86 qemu-system-arm qemu-utils ovmf qemu-efi-aarch64 socat

image-tools:
	@dpkg -s $(IMAGE_TOOLS) >/dev/null 2>&1 || (apt-get update -q && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends $(IMAGE_TOOLS))

# REUSE_ROOTFS=1: keep the last root file system in IMAGE_OUT (development; mmdebstrap is the long step).
IMAGE_FLAGS = $(if $(REUSE_ROOTFS),--reuse-rootfs)

image: setup image-tools
	@nice -n 19 images/build-image.sh --board $(BOARD) --out $(IMAGE_OUT) $(IMAGE_FLAGS)

image-test: setup image-tools
	@nice -n 19 images/build-image.sh --board pc-amd64 --out $(IMAGE_OUT) $(IMAGE_FLAGS)
	@SOHOA_IMAGE=$(IMAGE_OUT)/sohoa-$$($(PY) -c 'import protocol; print(protocol.__version__)')-pc-amd64.img \
		nice -n 19 $(PY) -m pytest -q -s -p no:xdist --durations=5 --basetemp=$(IMAGE_OUT)/test \
		tests/images/test_vm_image.py

clean:
	rm -rf build *.egg-info .pytest_cache .mypy_cache .ruff_cache
